"""Generator backends: one protocol, a local transformers implementation and an OpenAI-compatible HTTP client.

``Backend.generate(batch_of_messages, sampling, seed)`` returns one :class:`Generation` per conversation, in
order. The same (batch, sampling, seed) gives the same texts on the same hardware and software: the local
backend seeds torch per micro-batch, the HTTP backend sends a per-request seed (honoured by vLLM, by
``transformers serve`` and by :mod:`tools.openai_server` with ``--max-batch 1``).
"""

from __future__ import annotations

import copy
import hashlib
import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal, Protocol, runtime_checkable

import httpx
from pydantic import BaseModel, ConfigDict, Field
from tenacity import (
    RetryCallState,
    RetryError,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

Message = dict[str, str]


class BackendError(RuntimeError):
    """A backend could not produce generations (bad configuration, unreachable server, refused request)."""


class SamplingSettings(BaseModel):
    """How to sample. ``temperature == 0`` means greedy decoding."""

    model_config = ConfigDict(frozen=True)

    temperature: float = Field(0.7, ge=0.0, le=5.0)
    top_p: float = Field(0.95, gt=0.0, le=1.0)
    max_new_tokens: int = Field(256, ge=1, le=32768)


class Generation(BaseModel):
    """One completion: its text and token counts (completion tokens include the end-of-turn token)."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: Literal["stop", "length"] = "stop"


@runtime_checkable
class Backend(Protocol):
    """Anything that turns a batch of chat conversations into completions."""

    model_name: str

    def generate(self, batch: Sequence[Sequence[Message]], sampling: SamplingSettings, seed: int) -> list[Generation]:
        ...


class BackendSpec(BaseModel):
    """How to build a backend (what a generation request and the CLI carry)."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["local", "openai"] = "local"
    #: Local: a Hub id, folder or GGUF file (resolved by tools.models). OpenAI: the served model name.
    model: str = "HuggingFaceTB/SmolLM2-135M-Instruct"
    #: OpenAI-compatible server root, e.g. http://127.0.0.1:8000 or https://api.example.com/v1.
    base_url: str | None = None
    #: Name of the environment variable that holds the API key (the key itself is never stored or logged).
    api_key_env: str | None = None
    max_concurrency: int = Field(8, ge=1, le=256)
    timeout_s: float = Field(120.0, gt=0)
    max_retries: int = Field(5, ge=0, le=20)
    #: Local: conversations decoded together.
    batch_size: int = Field(32, ge=1, le=1024)
    #: Local: "auto" uses bf16 weights where bf16 is faster than fp32 (CUDA, or a CPU with AMX tiles).
    precision: Literal["auto", "float32", "bfloat16"] = "auto"
    #: Local: padded prompt tokens per prefill pass (long prompts are prefilled in smaller pieces).
    max_batch_tokens: int = Field(4096, ge=64)


def derive_seed(*parts: object) -> int:
    """A 31-bit seed from any parts, stable across processes and platforms (unlike ``hash``)."""
    digest = hashlib.sha256(":".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def make_backend(spec: BackendSpec) -> Backend:
    """Build the backend a spec describes."""
    if spec.kind == "openai":
        if not spec.base_url:
            raise BackendError("the openai backend needs base_url (e.g. http://127.0.0.1:8000/v1)")
        return OpenAIBackend(spec.base_url, spec.model, api_key_env=spec.api_key_env,
                             max_concurrency=spec.max_concurrency, timeout_s=spec.timeout_s,
                             max_retries=spec.max_retries)
    return LocalBackend.from_pretrained(spec.model, batch_size=spec.batch_size, precision=spec.precision,
                                        max_batch_tokens=spec.max_batch_tokens)


# ----- local transformers ------------------------------------------------------------------------------------
def wants_bf16(precision: str, device: Any) -> bool:
    """Whether a local backend with this precision setting runs in bf16 on ``device``: "auto" takes bf16 where it
    is faster than fp32 (CUDA, or a CPU with AMX tiles). On this project's CPU (AVX512-BF16, no AMX),
    benchmarks/results/generation_throughput.json measured batched generation at 27.6 tokens/s in fp32 against
    22.1 in bf16, side by side."""
    from tools.train_hardware import bf16_speeds_up_training

    return precision == "bfloat16" or (precision == "auto" and bf16_speeds_up_training(str(device)))


class RowSampler:
    """Temperature + nucleus (top-p) sampling with one random stream per row (a transformers logits processor).

    Adding Gumbel noise to the log-probabilities and taking the argmax draws exactly from the softmax
    distribution; drawing the noise from a per-row generator makes each row's sample depend only on its own
    prompt and seed, not on the other prompts in its batch or on how the batch was cut into micro-batches.
    """

    def __init__(self, row_seeds: Sequence[int], temperature: float, top_p: float):
        import torch

        self.generators = [torch.Generator().manual_seed(s) for s in row_seeds]
        self.temperature = temperature
        self.top_p = top_p

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        """As a transformers logits processor: row i of the batch is the sampler's row i."""
        return self.perturb(scores, range(scores.shape[0]))

    def pick(self, scores: Any, rows: Sequence[int]) -> Any:
        """The sampled token of each row of ``scores``; ``rows`` says which sampler row (random stream) each is."""
        return self.perturb(scores, rows).argmax(dim=-1)

    def perturb(self, scores: Any, rows: Sequence[int]) -> Any:
        import torch

        logits = scores.float() / self.temperature
        if self.top_p < 1.0:
            sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
            probs = sorted_logits.softmax(dim=-1)
            # Drop a token when the tokens ranked above it already hold top_p of the mass (keeps at least one).
            drop_sorted = (probs.cumsum(dim=-1) - probs) > self.top_p
            drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
            logits = logits.masked_fill(drop, float("-inf"))
        uniform = torch.stack([torch.rand(logits.shape[-1], generator=self.generators[r]) for r in rows])
        gumbel = -torch.log(-torch.log(uniform.clamp(min=1e-20, max=1.0 - 1e-7)))
        return logits + gumbel.to(logits.device)


class LocalBackend:
    """Batched generation with a transformers causal LM through :func:`tools.decoding.decode`, bf16 where supported.

    Conversations are rendered with the tokenizer's chat template and decoded up to ``batch_size`` rows a step;
    prompts that share a prefix (the chat template's system text, few-shot instructions) run it once, prompts are
    prefilled in pieces of at most ``max_batch_tokens`` padded tokens (on a CPU, prefill of long prompts costs more
    than decoding), and a row leaves the batch when it ends. With bf16 (``precision`` "auto" where bf16 is faster,
    it, or "bfloat16") the weights are held in bf16: a copy when the caller's model is fp32 (it may be training
    elsewhere), which ran 1.3x faster than bf16 autocast over fp32 weights. Conversation ``i`` of a call is sampled
    from its own random stream, seeded from ``(seed, i)`` (see :class:`RowSampler`), so its text does not depend on
    the other conversations of the call or on how they are batched.
    """

    def __init__(self, model: Any, tokenizer: Any, *, model_name: str = "", batch_size: int = 32,
                 precision: Literal["auto", "float32", "bfloat16"] = "auto", max_batch_tokens: int = 4096):
        import torch

        if getattr(tokenizer, "chat_template", None) is None:
            raise BackendError(f"tokenizer of {model_name or 'the model'} has no chat template")
        self.device = next(model.parameters()).device
        self.bf16 = wants_bf16(precision, self.device)
        if self.bf16 and next(model.parameters()).dtype == torch.float32:
            model = copy.deepcopy(model).to(torch.bfloat16)
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.model_name = model_name or getattr(model.config, "_name_or_path", "") or "local"
        self.batch_size = batch_size
        self.max_batch_tokens = max_batch_tokens
        self.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        if self.pad_token_id is None:
            raise BackendError("tokenizer has neither a pad nor an eos token")
        self.stop_ids = self._stop_ids()

    @classmethod
    def from_pretrained(cls, spec: str, *, batch_size: int = 32,
                        precision: Literal["auto", "float32", "bfloat16"] = "auto",
                        max_batch_tokens: int = 4096) -> LocalBackend:
        """Load a model by Hub id, folder or GGUF file through tools.models."""
        import torch

        from tools.models import load_causal_lm, load_tokenizer

        # On a GPU the loader's default is already bf16; on a CPU, load bf16 directly rather than copy later.
        on_cpu = not torch.cuda.is_available()
        model = (load_causal_lm(spec, dtype=torch.bfloat16) if on_cpu and wants_bf16(precision, torch.device("cpu"))
                 else load_causal_lm(spec))
        return cls(model, load_tokenizer(spec), model_name=spec, batch_size=batch_size, precision=precision,
                   max_batch_tokens=max_batch_tokens)

    def _stop_ids(self) -> list[int]:
        ids: set[int] = set()
        eos = getattr(self.model.generation_config, "eos_token_id", None)
        for value in (eos, self.tokenizer.eos_token_id):
            if isinstance(value, int):
                ids.add(value)
            elif isinstance(value, list):
                ids.update(v for v in value if isinstance(v, int))
        return sorted(ids)

    def render(self, messages: Sequence[Message]) -> str:
        """The prompt text for one conversation, ending with the assistant's generation prompt."""
        return str(self.tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True))

    def generate(self, batch: Sequence[Sequence[Message]], sampling: SamplingSettings, seed: int) -> list[Generation]:
        return self.generate_rows(batch, sampling, [derive_seed(seed, i) for i in range(len(batch))])

    def generate_rows(self, batch: Sequence[Sequence[Message]], sampling: SamplingSettings,
                      row_seeds: Sequence[int]) -> list[Generation]:
        """Like :meth:`generate`, with an explicit sampling seed per conversation (the server's request seeds)."""
        from tools.decoding import decode, greedy

        if len(row_seeds) != len(batch):
            raise BackendError(f"{len(row_seeds)} seeds for {len(batch)} conversations")
        if not batch:
            return []
        prompts = [list(ids) for ids in self.tokenizer([self.render(m) for m in batch],
                                                       add_special_tokens=False)["input_ids"]]
        pick = (RowSampler(row_seeds, sampling.temperature, sampling.top_p).pick if sampling.temperature > 0
                else greedy)
        decoded = decode(self.model, prompts, max_new_tokens=sampling.max_new_tokens, stop_ids=self.stop_ids,
                         pad_token_id=self.pad_token_id, batch_size=self.batch_size,
                         prefill_tokens=self.max_batch_tokens, pick=pick)
        return [Generation(text=str(self.tokenizer.decode(d.tokens, skip_special_tokens=True)).strip(),
                           prompt_tokens=len(prompt),
                           completion_tokens=len(d.tokens) + (d.finish == "stop_token"),
                           finish_reason="stop" if d.finish == "stop_token" else "length")
                for prompt, d in zip(prompts, decoded, strict=True)]


# ----- OpenAI-compatible HTTP --------------------------------------------------------------------------------
class _RetryableHTTPError(Exception):
    def __init__(self, status: int, detail: str, retry_after: float | None):
        super().__init__(f"HTTP {status}: {detail}")
        self.status = status
        self.retry_after = retry_after


def _retry_after_seconds(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, min(float(value), 60.0))
    except ValueError:
        return None


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, _RetryableHTTPError | httpx.TimeoutException | httpx.TransportError)


class OpenAIBackend:
    """Chat completions against any OpenAI-compatible server, ``max_concurrency`` requests in flight.

    Retries 429, 5xx, timeouts and dropped connections with exponential backoff (honouring ``Retry-After``);
    any other 4xx fails at once with the server's message. The API key is read from the environment variable
    named ``api_key_env`` and only ever placed in the Authorization header.
    """

    def __init__(self, base_url: str, model: str, *, api_key_env: str | None = None, max_concurrency: int = 8,
                 timeout_s: float = 120.0, max_retries: int = 5, backoff_s: float = 0.5):
        root = base_url.rstrip("/")
        self.url = root + ("/chat/completions" if root.endswith("/v1") else "/v1/chat/completions")
        self.model_name = model
        self.max_concurrency = max_concurrency
        self.max_retries = max_retries
        self._backoff = wait_exponential_jitter(multiplier=backoff_s, max=30.0, jitter=backoff_s)
        headers = {"Content-Type": "application/json"}
        if api_key_env:
            key = os.environ.get(api_key_env)
            if not key:
                raise BackendError(f"environment variable {api_key_env} (the API key for {root}) is not set")
            headers["Authorization"] = f"Bearer {key}"
        self._client = httpx.Client(headers=headers, timeout=httpx.Timeout(timeout_s),
                                    limits=httpx.Limits(max_connections=max_concurrency))

    def __repr__(self) -> str:
        return f"OpenAIBackend(url={self.url!r}, model={self.model_name!r})"

    def close(self) -> None:
        self._client.close()

    def generate(self, batch: Sequence[Sequence[Message]], sampling: SamplingSettings, seed: int) -> list[Generation]:
        if not batch:
            return []
        with ThreadPoolExecutor(max_workers=min(self.max_concurrency, len(batch))) as pool:
            futures = [pool.submit(self._complete, list(messages), sampling, derive_seed(seed, i))
                       for i, messages in enumerate(batch)]
            return [f.result() for f in futures]

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, _RetryableHTTPError) and exc.retry_after is not None:
            return exc.retry_after
        return float(self._backoff(state))

    def _complete(self, messages: list[Message], sampling: SamplingSettings, seed: int) -> Generation:
        body = {
            "model": self.model_name,
            "messages": messages,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "max_tokens": sampling.max_new_tokens,
            "seed": seed,
            "n": 1,
        }
        retrying = Retrying(retry=retry_if_exception(_retryable), stop=stop_after_attempt(self.max_retries + 1),
                            wait=self._wait, reraise=False)
        try:
            for attempt in retrying:
                with attempt:
                    response = self._client.post(self.url, json=body)
                    if response.status_code == 429 or response.status_code >= 500:
                        raise _RetryableHTTPError(response.status_code, response.text[:300],
                                                  _retry_after_seconds(response))
        except RetryError as exc:
            last = exc.last_attempt.exception()
            raise BackendError(f"{self.url}: gave up after {self.max_retries + 1} attempts: "
                               f"{type(last).__name__}: {last}") from None
        if response.status_code != 200:
            raise BackendError(f"{self.url}: HTTP {response.status_code}: {response.text[:300]}")
        return self._parse(response)

    def _parse(self, response: httpx.Response) -> Generation:
        try:
            data = response.json()
            choice = data["choices"][0]
            text = choice["message"].get("content") or ""
            usage = data.get("usage") or {}
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
            raise BackendError(f"{self.url}: not a chat completion response ({type(exc).__name__}: {exc}): "
                               f"{response.text[:200]}") from None
        finish = "length" if choice.get("finish_reason") == "length" else "stop"
        return Generation(text=text.strip(), prompt_tokens=int(usage.get("prompt_tokens", 0)),
                          completion_tokens=int(usage.get("completion_tokens", 0)), finish_reason=finish)


def timed_generate(backend: Backend, batch: Sequence[Sequence[Message]], sampling: SamplingSettings,
                   seed: int) -> tuple[list[Generation], float]:
    """Generate and measure wall time; checks the backend kept the batch's length and order contract."""
    start = time.perf_counter()
    generations = backend.generate(batch, sampling, seed)
    if len(generations) != len(batch):
        raise BackendError(f"{backend.model_name}: {len(generations)} generations for {len(batch)} prompts")
    return generations, time.perf_counter() - start
