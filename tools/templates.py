"""FLock's chat templates, tokenization and assistant-only masking, identical to the validator.

Replicates FLock-io/llm-loss-validator HEAD (FLOCK_API.md 8.2, 8.3): ``src/core/template.py`` (the templates),
``src/core/tool_utils.py`` (tool and function-call rendering), ``src/core/dataset.py`` (``UnifiedSFTDataset``:
segments, masks, truncation) and ``src/core/collator.py`` (``SFTDataCollator``). Anything the validator does,
quirks included, is done here the same way, because FLock scores exactly these tokens:

- system: ``record.system.strip()`` when present, else the template's default; rendered only when the template
  has a ``system_format`` and the system text is not None (an empty string still renders).
- tools (when the ``tools`` string is non-empty): ``tool_format(tool_formater(json.loads(tools)))``, mask 0.
- turns: user / function_call / observation text accumulates in a buffer; each assistant turn encodes the buffer
  (mask 0) and the assistant text (mask 1) as two separate ``encode`` calls. Text after the last assistant turn
  is dropped. Every turn's content is ``.strip()``-ped.
- truncation to ``context_length`` tokens, after everything else.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tools.data import FlockRecord

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerBase


@dataclass(frozen=True)
class ChatTemplate:
    """One of FLock's templates (LV ``register_template``). ``None`` formats/systems mean "not rendered"."""

    name: str
    system_format: str | None
    user_format: str
    assistant_format: str
    tool_format: str
    function_format: str
    observation_format: str
    system: str | None
    stop_word: str | None


_LLAMA2_SYSTEM = (
    "You are a helpful, respectful and honest assistant. "
    "Always answer as helpfully as possible, while being safe. "
    "Your answers should not include any harmful, unethical, "
    "racist, sexist, toxic, dangerous, or illegal content. "
    "Please ensure that your responses are socially unbiased and positive in nature.\n\n"
    "If a question does not make any sense, or is not factually coherent, "
    "explain why instead of answering something not correct. "
    "If you don't know the answer to a question, please don't share false information."
)
_CHATML_SYSTEM = "<|im_start|>system\n{content}<|im_end|>\n"
_CHATML_USER = "<|im_start|>user\n{content}<|im_end|>\n<|im_start|>assistant\n"
# "<im_end>" (not "<|im_end|>") is a typo in the validator's source; kept because FLock scores with it.
_CHATML_OBSERVATION = "<|im_start|>tool\n{content}<im_end>\n<|im_start|>assistant\n"
_PHI_USER = "<|user|>\n{content}<|end|>\n<|assistant|>"
_PHI_OBSERVATION = "<|tool|>\n{content}<|end|>\n<|assistant|>"

TEMPLATES: dict[str, ChatTemplate] = {
    t.name: t
    for t in (
        ChatTemplate("default", "System: {content}\n\n", "User: {content}\nAssistant: ", "{content} {stop_token}",
                     "{content}", "{content}", "Tool\n{content}\n", None, None),
        ChatTemplate("qwen1.5", _CHATML_SYSTEM, _CHATML_USER, "{content}<|im_end|>\n", "{content}", "{content}",
                     _CHATML_OBSERVATION, "You are a helpful assistant.", "<|im_end|>"),
        ChatTemplate("yi", _CHATML_SYSTEM, _CHATML_USER, "{content}<|im_end|>\n", "{content}", "{content}",
                     _CHATML_OBSERVATION, None, "<|im_end|>"),
        ChatTemplate("zephyr", "<|system|>\n{content}</s>", "<|user|>\n{content}</s>\n<|assistant|>\n",
                     "{content}</s>\n", "{content}", "{content}", "<|tool|>\n{content}</s>\n<|assistant|>\n",
                     None, "</s>"),
        ChatTemplate("mistral", "<s>", "[INST]{content}[/INST]", "{content}</s>", "{content}", "{content}",
                     "{content}", "", "</s>"),
        ChatTemplate("mixtral", "<s>", "[INST]{content}[/INST]", "{content}</s>", "{content}", "{content}",
                     "{content}", "", "</s>"),
        ChatTemplate("llama2", "<<SYS>>\n{content}\n<</SYS>>\n\n", "[INST]{content}[/INST]", "{content} </s>",
                     "{content}", "{content}", "{content}", _LLAMA2_SYSTEM, "</s>"),
        ChatTemplate("gemma", "<bos>", "<start_of_turn>user\n{content}<end_of_turn>\n<start_of_turn>model\n",
                     "{content}<eos>\n", "{content}", "{content}",
                     "<start_of_turn>tool\n{content}<end_of_turn>\n<start_of_turn>model\n", "", "<eos>"),
        ChatTemplate("llama3",
                     "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n{content}<|eot_id|>",
                     "<|start_header_id|>user<|end_header_id|>\n\n{content}<|eot_id|>"
                     "<|start_header_id|>assistant<|end_header_id|>\n\n",
                     "{content}<|eot_id|>", "{content}", "{content}",
                     "<|start_header_id|>tool<|end_header_id|>\n\n{content}<|eot_id|>"
                     "<|start_header_id|>assistant<|end_header_id|>\n\n",
                     None, "<|eot_id|>"),
        ChatTemplate("phi3", None, _PHI_USER, "{content}<|end|>\n", "{content}", "{content}", _PHI_OBSERVATION,
                     None, "<|end|>"),
        ChatTemplate("phi4", None, _PHI_USER, "{content}<|end|>\n", "<|tool|>{content}<|/tool|>",
                     "<|tool_call|>{content}<|/tool_call|>", _PHI_OBSERVATION, None, "<|end|>"),
    )
}


def get_template(name: str | ChatTemplate) -> ChatTemplate:
    """The template called ``name`` (a template passes through). Unknown names fail like the validator does."""
    if isinstance(name, ChatTemplate):
        return name
    try:
        return TEMPLATES[name]
    except KeyError:
        raise ValueError(f"unknown FLock template {name!r}; valid names: {', '.join(TEMPLATES)}") from None


# ----- tools and function calls (LV src/core/tool_utils.py) --------------------------------------------------
_TOOL_PROMPT = (
    "You have access to the following tools:\n{tool_text}"
    "Use the following format if using a tool:\n"
    "```\n"
    "Action: tool name (one of [{tool_names}])\n"
    "Action Input: the input to the tool, in a JSON format representing the kwargs "
    """(e.g. ```{{"input": "hello world", "num_beams": 5}}```)\n"""
    "```\n"
)
_FUNCTION_SLOTS = "Action: {name}\nAction Input: {arguments}\n"


class TemplateError(ValueError):
    """A record that FLock's validator would crash on; the message says which part and why."""


def format_tools(tools: list[dict[str, Any]]) -> str:
    """The tool prompt, exactly as the validator's ``tool_formater`` renders it."""
    tool_text = ""
    names = []
    for i, tool in enumerate(tools):
        try:
            properties = tool["parameters"]["properties"]
            required_names = tool["parameters"].get("required", [])
            param_text = ""
            for name, param in properties.items():
                required = ", required" if name in required_names else ""
                enum = f", should be one of [{', '.join(param['enum'])}]" if param.get("enum", None) else ""
                items = (f", where each item should be {param['items'].get('type', '')}"
                         if param.get("items", None) else "")
                param_text += (f"  - {name} ({param.get('type', '')}{required}): "
                               f"{param.get('description', '')}{enum}{items}\n")
        except (KeyError, TypeError, AttributeError) as exc:
            tool_name = tool.get("name", "?") if isinstance(tool, dict) else repr(tool)
            raise TemplateError(
                f"tools[{i}] ({tool_name}): FLock's validator "
                f"cannot render it ({type(exc).__name__}: {exc}); it needs parameters.properties as an object "
                "whose values are objects, with string enum values"
            ) from None
        tool_text += (f"> Tool Name: {tool['name']}\nTool Description: {tool.get('description', '')}\n"
                      f"Tool Args:\n{param_text}\n")
        names.append(tool["name"])
    return _TOOL_PROMPT.format(tool_text=tool_text, tool_names=", ".join(names))


def format_function_call(tool_calls: Any) -> str:
    """A function_call turn, exactly as the validator's ``function_formatter`` renders it."""
    if not tool_calls:
        return ""
    calls = tool_calls if isinstance(tool_calls, list) else [tool_calls]
    rendered = []
    for call in calls:
        if not isinstance(call, dict) or "name" not in call or "arguments" not in call:
            raise TemplateError(f"invalid tool call format: {call!r}")
        arguments = json.dumps(call["arguments"], ensure_ascii=False)
        rendered.append(_FUNCTION_SLOTS.format(name=call["name"], arguments=arguments))
    return "\n".join(rendered) + "\n"


# ----- rendering and tokenization ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Segment:
    """A piece of rendered text the validator encodes in one ``encode`` call; ``target`` is its mask bit."""

    text: str
    target: bool


def render_segments(record: FlockRecord, template: ChatTemplate | str, eos_token: str | None) -> list[Segment]:
    """The record as the validator's encode calls see it, in order (before tokenization and truncation)."""
    t = get_template(template)
    segments: list[Segment] = []
    if t.system_format is not None:
        system = record.system.strip() if record.system is not None else t.system
        if system is not None:
            segments.append(Segment(t.system_format.format(content=system), False))
    if record.tools:
        segments.append(Segment(t.tool_format.format(content=format_tools(json.loads(record.tools))), False))
    buffer = ""
    for turn in record.conversations:
        content = turn.content.strip()
        if turn.role == "user":
            buffer += t.user_format.format(content=content, stop_token=eos_token)
        elif turn.role == "function_call":
            buffer += t.function_format.format(content=format_function_call(json.loads(content)))
        elif turn.role == "observation":
            buffer += t.observation_format.format(content=content)
        elif turn.role == "assistant":
            segments.append(Segment(buffer, False))
            segments.append(Segment(t.assistant_format.format(content=content, stop_token=eos_token), True))
            buffer = ""
    return segments


def render_prompt(record: FlockRecord, template: ChatTemplate | str, eos_token: str | None) -> tuple[str, str]:
    """(prompt, reference) for generation: everything before the last assistant turn, and that turn's content.

    The prompt is exactly the text FLock conditions the last answer on, so greedy decoding from it predicts the
    answer FLock scores.
    """
    segments = render_segments(record, template, eos_token)
    last_target = max(i for i, s in enumerate(segments) if s.target)
    prompt = "".join(s.text for s in segments[:last_target])
    reference = [turn.content for turn in record.conversations if turn.role == "assistant"][-1].strip()
    return prompt, reference


@dataclass(frozen=True)
class TokenizedExample:
    """Token ids and FLock's target mask (1 = assistant token, trained and scored) for one record."""

    input_ids: list[int]
    target_mask: list[int]

    @property
    def attention_mask(self) -> list[int]:
        return [1] * len(self.input_ids)

    @property
    def num_targets(self) -> int:
        return sum(self.target_mask)

    def __len__(self) -> int:
        return len(self.input_ids)


def _encode_many(tokenizer: PreTrainedTokenizerBase, texts: list[str]) -> list[list[int]]:
    if not texts:
        return []
    # One batched call: the fast tokenizer encodes in parallel; identical to encode(text) per text.
    return [list(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]


def tokenize_records(
    records: Sequence[FlockRecord],
    tokenizer: PreTrainedTokenizerBase,
    template: ChatTemplate | str,
    context_length: int,
) -> list[TokenizedExample]:
    """Tokenize many records exactly as the validator's ``UnifiedSFTDataset.__getitem__`` does, batched."""
    if context_length <= 0:
        raise ValueError(f"context_length must be positive, got {context_length}")
    t = get_template(template)
    per_record = []
    for index, record in enumerate(records):
        try:
            per_record.append(render_segments(record, t, tokenizer.eos_token))
        except TemplateError as exc:
            raise TemplateError(f"record {index}: {exc}") from None
    flat = [segment.text for segments in per_record for segment in segments]
    encoded = iter(_encode_many(tokenizer, flat))
    out = []
    for segments in per_record:
        input_ids: list[int] = []
        target_mask: list[int] = []
        for segment in segments:
            ids = next(encoded)
            input_ids += ids
            target_mask += [int(segment.target)] * len(ids)
        out.append(TokenizedExample(input_ids[:context_length], target_mask[:context_length]))
    return out


def tokenize_record(
    record: FlockRecord,
    tokenizer: PreTrainedTokenizerBase,
    template: ChatTemplate | str,
    context_length: int,
) -> TokenizedExample:
    """Tokenize one record exactly as FLock's validator does."""
    return tokenize_records([record], tokenizer, template, context_length)[0]


class SFTCollator:
    """FLock's ``SFTDataCollator``: right-pad to ``min(longest, max_seq_length)``; labels = ids where mask is 1."""

    def __init__(self, pad_token_id: int, max_seq_length: int):
        self.pad_token_id = pad_token_id
        self.max_seq_length = max_seq_length

    def __call__(self, batch: Sequence[TokenizedExample]) -> dict[str, torch.Tensor]:
        import torch

        width = min(max(len(x) for x in batch), self.max_seq_length)
        ids, attention, targets = [], [], []
        for x in batch:
            pad = width - len(x)
            ids.append((x.input_ids + [self.pad_token_id] * pad)[:width])
            attention.append(([1] * len(x) + [0] * pad)[:width])
            targets.append((x.target_mask + [0] * pad)[:width])
        input_ids = torch.tensor(ids, dtype=torch.long)
        labels = torch.where(torch.tensor(targets) == 1, input_ids, -100)
        return {"input_ids": input_ids, "attention_mask": torch.tensor(attention, dtype=torch.long),
                "labels": labels}


__all__ = [
    "TEMPLATES",
    "ChatTemplate",
    "SFTCollator",
    "Segment",
    "TemplateError",
    "TokenizedExample",
    "format_function_call",
    "format_tools",
    "get_template",
    "render_prompt",
    "render_segments",
    "tokenize_record",
    "tokenize_records",
]
