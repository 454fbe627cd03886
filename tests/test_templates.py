"""FLock templates and masking: pinned examples and a token-by-token comparison with the validator's algorithm."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tools.data import FlockRecord, load_jsonl
from tools.templates import (
    TEMPLATES,
    SFTCollator,
    TemplateError,
    format_function_call,
    format_tools,
    get_template,
    render_prompt,
    render_segments,
    tokenize_record,
    tokenize_records,
)

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "tools" / "demo_tasks"
#: FLock's own sample files stay outside the project; they are read where ../shared holds them.
SAMPLES = ROOT.parent / "shared" / "flock" / "samples"
needs_samples = pytest.mark.skipif(not SAMPLES.is_dir(), reason="../shared/flock/samples not present")
#: Real records (file, how many lines) to compare with the validator on: the project's bundled demo tasks always
#: (between them: system, user, assistant, function_call, observation and tools, multi-turn dialogues, several
#: calls, empty tool lists, enum and array parameters), and FLock's sample files where they are present.
REAL_RECORDS = [
    pytest.param(((DEMO / "text2sql" / "training_set.jsonl", 10),
                  (DEMO / "function_calling" / "training_set.jsonl", 40)), id="bundled"),
    pytest.param(((SAMPLES / "quickstart_demo_data.jsonl", 8), (SAMPLES / "validator_dummy_data.jsonl", 10),
                  (SAMPLES / "quickstart_function_calling_demo.jsonl", 40)), id="flock-samples", marks=needs_samples),
]


def record(obj: dict[str, Any]) -> FlockRecord:
    return FlockRecord.model_validate(obj)


# ----- the validator's algorithm, transcribed independently (LV src/core/dataset.py + tool_utils.py HEAD) ------
def _lv_tool_formater(tools: list[dict[str, Any]]) -> str:
    tool_text = ""
    tool_names = []
    for tool in tools:
        param_text = ""
        for name, param in tool["parameters"]["properties"].items():
            required, enum, items = "", "", ""
            if name in tool["parameters"].get("required", []):
                required = ", required"
            if param.get("enum", None):
                enum = ", should be one of [{}]".format(", ".join(param["enum"]))
            if param.get("items", None):
                items = ", where each item should be {}".format(param["items"].get("type", ""))
            param_text += "  - {name} ({type}{required}): {desc}{enum}{items}\n".format(
                name=name, type=param.get("type", ""), required=required, desc=param.get("description", ""),
                enum=enum, items=items)
        tool_text += "> Tool Name: {name}\nTool Description: {desc}\nTool Args:\n{args}\n".format(
            name=tool["name"], desc=tool.get("description", ""), args=param_text)
        tool_names.append(tool["name"])
    prompt = (
        "You have access to the following tools:\n{tool_text}"
        "Use the following format if using a tool:\n```\n"
        "Action: tool name (one of [{tool_names}])\n"
        "Action Input: the input to the tool, in a JSON format representing the kwargs "
        """(e.g. ```{{"input": "hello world", "num_beams": 5}}```)\n```\n"""
    )
    return prompt.format(tool_text=tool_text, tool_names=", ".join(tool_names))


def _lv_function_formatter(tool_calls: Any) -> str:
    if not tool_calls:
        return ""
    if not isinstance(tool_calls, list):
        tool_calls = [tool_calls]
    texts = ["Action: {name}\nAction Input: {arguments}\n".format(
        name=c["name"], arguments=json.dumps(c["arguments"], ensure_ascii=False)) for c in tool_calls]
    return "\n".join(texts) + "\n"


def _lv_getitem(data: dict[str, Any], tokenizer: Any, t: Any, max_seq_length: int) -> dict[str, list[int]]:
    input_ids: list[int] = []
    target_mask: list[int] = []
    if t.system_format is not None:
        system = data["system"].strip() if "system" in data else t.system
        if system is not None:
            input_ids = tokenizer.encode(t.system_format.format(content=system), add_special_tokens=False)
            target_mask = [0] * len(input_ids)
    if "tools" in data and data["tools"]:  # noqa: RUF019 - transcribed as written in the validator
        tool_text = t.tool_format.format(content=_lv_tool_formater(json.loads(data["tools"])))
        tool_tokens = tokenizer.encode(tool_text, add_special_tokens=False)
        input_ids = input_ids + tool_tokens
        target_mask = target_mask + [0] * len(tool_tokens)
    input_buffer = ""
    for conversation in data["conversations"]:
        role = conversation["role"]
        content = conversation["content"].strip()
        if role != "assistant":
            if role == "user":
                input_buffer += t.user_format.format(content=content, stop_token=tokenizer.eos_token)
            elif role == "function_call":
                input_buffer += t.function_format.format(content=_lv_function_formatter(json.loads(content)))
            elif role == "observation":
                input_buffer += t.observation_format.format(content=content)
        else:
            assistant = t.assistant_format.format(content=content, stop_token=tokenizer.eos_token)
            input_tokens = tokenizer.encode(input_buffer, add_special_tokens=False)
            output_tokens = tokenizer.encode(assistant, add_special_tokens=False)
            input_ids += input_tokens + output_tokens
            target_mask += [0] * len(input_tokens) + [1] * len(output_tokens)
            input_buffer = ""
    return {"input_ids": input_ids[:max_seq_length], "target_mask": target_mask[:max_seq_length]}


def _real_lines(files: tuple[tuple[Path, int], ...]) -> list[str]:
    lines: list[str] = []
    for path, limit in files:
        with path.open(encoding="utf-8") as handle:
            lines += [line for line in handle if line.strip()][:limit]
    return lines


# ----- pinned behaviour ---------------------------------------------------------------------------------------
def test_worked_example_qwen_segments_and_tokens(smol_tokenizer):
    rec = record({"system": "S", "conversations": [{"role": "user", "content": "Hi"},
                                                   {"role": "assistant", "content": "Hello"}]})
    segments = render_segments(rec, "qwen1.5", smol_tokenizer.eos_token)
    assert [(s.text, s.target) for s in segments] == [
        ("<|im_start|>system\nS<|im_end|>\n", False),
        ("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n", False),
        ("Hello<|im_end|>\n", True),
    ]
    example = tokenize_record(rec, smol_tokenizer, "qwen1.5", 2048)
    enc = [smol_tokenizer.encode(s.text, add_special_tokens=False) for s in segments]
    assert example.input_ids == enc[0] + enc[1] + enc[2]
    assert example.target_mask == [0] * (len(enc[0]) + len(enc[1])) + [1] * len(enc[2])
    # <|im_end|> is one special token in SmolLM2's vocabulary, and it is a target token.
    im_end = smol_tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert enc[2][-2] == im_end and example.target_mask[-2] == 1


def test_all_flock_templates_present_with_source_quirks():
    assert set(TEMPLATES) == {"default", "qwen1.5", "yi", "zephyr", "mistral", "mixtral", "llama2", "gemma",
                              "llama3", "phi3", "phi4"}
    assert "<im_end>" in TEMPLATES["qwen1.5"].observation_format  # the validator's typo, kept
    assert TEMPLATES["yi"].system is None and TEMPLATES["qwen1.5"].system == "You are a helpful assistant."
    assert TEMPLATES["phi3"].system_format is None
    assert TEMPLATES["default"].assistant_format == "{content} {stop_token}"


def test_unknown_template_error_lists_names():
    with pytest.raises(ValueError, match=r"unknown FLock template 'qwen2\.5'.*qwen1\.5.*phi4"):
        get_template("qwen2.5")


def test_records_without_system_use_template_default(smol_tokenizer):
    rec = record({"conversations": [{"role": "user", "content": " Hi "}, {"role": "assistant", "content": "Yo "}]})
    eos = smol_tokenizer.eos_token
    default_system = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    assert render_segments(rec, "qwen1.5", eos)[0].text == default_system
    assert [s.text for s in render_segments(rec, "yi", eos)] == [
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n", "Yo<|im_end|>\n"]
    # mistral's default system is "" (not None), so "<s>" is still rendered; phi3 never renders a system.
    assert render_segments(rec, "mistral", eos)[0].text == "<s>"
    assert render_segments(record({**rec.to_json_dict(), "system": "X"}), "phi3", eos)[0].text.startswith("<|user|>")
    # The default template puts the tokenizer's eos text after the answer.
    assert render_segments(rec, "default", eos)[-1].text == f"Yo {eos}"


def test_function_call_observation_and_tools_rendering():
    tools = [{"name": "get_weather", "description": "Weather now",
              "parameters": {"type": "object", "properties": {
                  "city": {"type": "string", "description": "City name"},
                  "unit": {"type": "string", "description": "Unit", "enum": ["C", "F"]},
                  "days": {"type": "array", "items": {"type": "integer"}}}, "required": ["city"]}}]
    rec = record({"system": "sys", "tools": json.dumps(tools), "conversations": [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "function_call", "content": json.dumps({"name": "get_weather", "arguments": {"city": "Paris"}})},
        {"role": "observation", "content": '{"temp": 20}'},
        {"role": "assistant", "content": "It is 20 degrees."},
        {"role": "user", "content": "Thanks"},  # trailing non-assistant text is dropped
    ]})
    segments = render_segments(rec, "qwen1.5", "<|im_end|>")
    assert segments[1].text == (
        "You have access to the following tools:\n"
        "> Tool Name: get_weather\nTool Description: Weather now\nTool Args:\n"
        "  - city (string, required): City name\n"
        "  - unit (string): Unit, should be one of [C, F]\n"
        "  - days (array): , where each item should be integer\n\n"
        "Use the following format if using a tool:\n```\nAction: tool name (one of [get_weather])\n"
        "Action Input: the input to the tool, in a JSON format representing the kwargs "
        '(e.g. ```{"input": "hello world", "num_beams": 5}```)\n```\n'
    )
    assert segments[2].text == (
        "<|im_start|>user\nWeather in Paris?<|im_end|>\n<|im_start|>assistant\n"
        'Action: get_weather\nAction Input: {"city": "Paris"}\n\n'
        '<|im_start|>tool\n{"temp": 20}<im_end>\n<|im_start|>assistant\n'
    )
    assert segments[3].text == "It is 20 degrees.<|im_end|>\n" and segments[3].target
    assert len(segments) == 4
    assert format_function_call([{"name": "a", "arguments": {}}, {"name": "b", "arguments": {"x": "é"}}]) == (
        'Action: a\nAction Input: {}\n\nAction: b\nAction Input: {"x": "é"}\n\n')
    assert format_tools(tools) == _lv_tool_formater(tools)


def test_phi4_wraps_tools_and_calls():
    rec = record({"tools": json.dumps([{"name": "f", "parameters": {"properties": {}}}]), "conversations": [
        {"role": "user", "content": "q"},
        {"role": "function_call", "content": json.dumps({"name": "f", "arguments": {"a": 1}})},
        {"role": "assistant", "content": "done"}]})
    texts = [s.text for s in render_segments(rec, "phi4", "<|endoftext|>")]
    assert texts[0].startswith("<|tool|>You have access") and texts[0].endswith("<|/tool|>")
    assert texts[1] == ('<|user|>\nq<|end|>\n<|assistant|>'
                        '<|tool_call|>Action: f\nAction Input: {"a": 1}\n\n<|/tool_call|>')


def test_tools_the_validator_cannot_render_raise_with_location(smol_tokenizer):
    bad = record({"tools": json.dumps([{"name": "f", "description": "no parameters"}]),
                  "conversations": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]})
    good = record({"conversations": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]})
    with pytest.raises(TemplateError, match=r"record 1: tools\[0\] \(f\)"):
        tokenize_records([good, bad], smol_tokenizer, "qwen1.5", 64)


def test_truncation_cuts_ids_and_mask_together(smol_tokenizer):
    rec = record({"system": "You are terse.", "conversations": [
        {"role": "user", "content": "Count to ten."},
        {"role": "assistant", "content": "one two three four five six seven eight nine ten"}]})
    full = tokenize_record(rec, smol_tokenizer, "qwen1.5", 10_000)
    prompt_len = full.target_mask.index(1)
    cut = tokenize_record(rec, smol_tokenizer, "qwen1.5", prompt_len + 3)
    assert cut.input_ids == full.input_ids[: prompt_len + 3]
    assert cut.target_mask == [0] * prompt_len + [1, 1, 1]
    none_left = tokenize_record(rec, smol_tokenizer, "qwen1.5", prompt_len)
    assert none_left.num_targets == 0 and len(none_left) == prompt_len


def test_render_prompt_stops_before_last_answer():
    rec = record({"system": "S", "conversations": [
        {"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
        {"role": "user", "content": "c"}, {"role": "assistant", "content": " d "}]})
    prompt, reference = render_prompt(rec, "qwen1.5", "<|im_end|>")
    assert prompt == ("<|im_start|>system\nS<|im_end|>\n<|im_start|>user\na<|im_end|>\n<|im_start|>assistant\n"
                      "b<|im_end|>\n<|im_start|>user\nc<|im_end|>\n<|im_start|>assistant\n")
    assert reference == "d"


def test_collator_matches_flock(smol_tokenizer):
    recs = [record({"conversations": [{"role": "user", "content": "x" * n}, {"role": "assistant", "content": "y"}]})
            for n in (1, 30)]
    examples = tokenize_records(recs, smol_tokenizer, "qwen1.5", 2048)
    batch = SFTCollator(smol_tokenizer.pad_token_id, max_seq_length=2048)(examples)
    width = max(len(e) for e in examples)
    assert batch["input_ids"].shape == (2, width)
    short = examples[0]
    assert batch["attention_mask"][0].tolist() == [1] * len(short) + [0] * (width - len(short))
    assert batch["input_ids"][0, len(short):].eq(smol_tokenizer.pad_token_id).all()
    expected = [i if m else -100 for i, m in zip(short.input_ids, short.target_mask, strict=True)]
    assert batch["labels"][0].tolist() == expected + [-100] * (width - len(short))
    assert SFTCollator(0, max_seq_length=5)(examples)["input_ids"].shape == (2, 5)


# ----- token-by-token against the validator's algorithm on real FLock records ---------------------------------
@pytest.mark.parametrize("files", REAL_RECORDS)
def test_real_records_hold_every_role_and_field(files):
    records = [json.loads(line) for line in _real_lines(files)]
    roles = {turn["role"] for r in records for turn in r["conversations"]}
    assert roles == {"user", "assistant", "function_call", "observation"}
    assert all(r.get("system") for r in records)
    assert any(json.loads(r.get("tools") or "[]") for r in records)
    assert any(sum(turn["role"] == "assistant" for turn in r["conversations"]) > 1 for r in records)


@pytest.mark.parametrize("files", REAL_RECORDS)
@pytest.mark.parametrize("template_name", ["qwen1.5", "yi", "default", "llama3", "phi4", "gemma"])
@pytest.mark.parametrize("context_length", [4096, 96])
def test_matches_validator_on_real_records(smol_tokenizer, template_name, context_length, files):
    lines = _real_lines(files)
    records = [FlockRecord.model_validate_json(line) for line in lines]
    ours = tokenize_records(records, smol_tokenizer, template_name, context_length)
    t = get_template(template_name)
    for i, (line, mine) in enumerate(zip(lines, ours, strict=True)):
        theirs = _lv_getitem(json.loads(line), smol_tokenizer, t, context_length)
        assert mine.input_ids == theirs["input_ids"], f"record {i}"
        assert mine.target_mask == theirs["target_mask"], f"record {i}"


@pytest.mark.parametrize("path", [
    pytest.param(DEMO / "function_calling" / "training_set.jsonl", id="bundled-function-calling"),
    pytest.param(DEMO / "text2sql" / "training_set.jsonl", id="bundled-text2sql"),
    pytest.param(SAMPLES / "quickstart_function_calling_demo.jsonl", id="flock-function-calling", marks=needs_samples),
])
def test_sample_files_tokenize_with_targets(smol_tokenizer, path):
    report = load_jsonl(path)
    examples = tokenize_records(report.records, smol_tokenizer, "qwen1.5", 4096)
    assert len(examples) == len(report.records)
    assert all(e.num_targets > 0 for e in examples)
