"""Local (transformers) and OpenAI-compatible backends; the OpenAI client runs against real servers on loopback:
our own server over a tiny random model, and small fault-injecting FastAPI apps."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from tools.backends import (
    BackendError,
    BackendSpec,
    Generation,
    LocalBackend,
    Message,
    OpenAIBackend,
    RowSampler,
    SamplingSettings,
    make_backend,
)
from tools.openai_server import create_app
from tools.threaded_server import ThreadedServer

CONVERSATIONS: list[list[Message]] = [
    [{"role": "user", "content": "Hi"}],
    [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Name three rivers in Europe."}],
    [{"role": "user", "content": "Count to five."}],
    [{"role": "user", "content": "What is the boiling point of water at sea level, in Celsius and Fahrenheit?"}],
    [{"role": "user", "content": "ok"}],
]
SAMPLING = SamplingSettings(temperature=0.9, top_p=0.95, max_new_tokens=8)
GREEDY = SamplingSettings(temperature=0.0, max_new_tokens=8)


@pytest.fixture(scope="module")
def local(tiny_model_dir: Path) -> LocalBackend:
    backend = make_backend(BackendSpec(kind="local", model=str(tiny_model_dir), batch_size=2, precision="float32"))
    assert isinstance(backend, LocalBackend)
    return backend


@contextmanager
def serve(app: FastAPI) -> Iterator[str]:
    """Run an ASGI app on a free loopback port in a thread; yields its base URL."""
    with ThreadedServer(app, lifespan="on") as server:
        yield server.url


# ----- local -------------------------------------------------------------------------------------------------
def test_row_sampler_draws_from_the_tempered_nucleus_distribution() -> None:
    import torch

    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]]).repeat(4000, 1)
    sampler = RowSampler(list(range(4000)), temperature=1.0, top_p=0.9)
    picks = sampler(None, logits).argmax(dim=-1)
    counts = torch.bincount(picks, minlength=4).float() / 4000
    kept = torch.tensor([2.0, 1.0, 0.0]).softmax(dim=-1)  # the 4th token lies outside the 0.9 nucleus
    assert counts[3] == 0
    assert torch.allclose(counts[:3], kept, atol=0.03)
    again = RowSampler(list(range(4000)), temperature=1.0, top_p=0.9)(None, logits).argmax(dim=-1)
    assert torch.equal(picks, again)
    cold = RowSampler(list(range(1000)), temperature=0.05, top_p=1.0)(None, logits[:1000]).argmax(dim=-1)
    assert (cold == 0).all()



def test_local_backend_returns_one_generation_per_conversation_in_order(local: LocalBackend) -> None:
    generations = local.generate(CONVERSATIONS, SAMPLING, seed=7)
    assert len(generations) == len(CONVERSATIONS)
    for messages, generation in zip(CONVERSATIONS, generations, strict=True):
        prompt_ids = local.tokenizer(local.render(messages), add_special_tokens=False)["input_ids"]
        assert generation.prompt_tokens == len(prompt_ids)
        assert 1 <= generation.completion_tokens <= SAMPLING.max_new_tokens
        if generation.finish_reason == "length":
            assert generation.completion_tokens == SAMPLING.max_new_tokens


def test_local_sampling_is_reproducible_per_seed(local: LocalBackend) -> None:
    first = [g.text for g in local.generate(CONVERSATIONS, SAMPLING, seed=11)]
    again = [g.text for g in local.generate(CONVERSATIONS, SAMPLING, seed=11)]
    other = [g.text for g in local.generate(CONVERSATIONS, SAMPLING, seed=12)]
    assert first == again
    assert first != other


def test_each_row_samples_from_its_own_stream(local: LocalBackend, tiny_model_dir: Path) -> None:
    """A row's sample does not depend on the other prompts in the call or on the micro-batch size."""
    reference = [g.text for g in local.generate(CONVERSATIONS, SAMPLING, seed=21)]
    changed = [*CONVERSATIONS[:2], [{"role": "user", "content": "Something else entirely, please."}],
               *CONVERSATIONS[3:]]
    other = [g.text for g in local.generate(changed, SAMPLING, seed=21)]
    assert other[:2] == reference[:2] and other[3:] == reference[3:]
    wide = LocalBackend(local.model, local.tokenizer, batch_size=5, precision="float32")
    assert [g.text for g in wide.generate(CONVERSATIONS, SAMPLING, seed=21)] == reference


def test_left_padded_batches_decode_like_single_prompts(local: LocalBackend) -> None:
    """Greedy decoding of a padded batch equals decoding each prompt alone: padding and masks are right."""
    batched = local.generate(CONVERSATIONS, GREEDY, seed=0)
    alone = [local.generate([c], GREEDY, seed=0)[0] for c in CONVERSATIONS]
    assert [g.text for g in batched] == [g.text for g in alone]


def test_bf16_generates(tiny_model_dir: Path) -> None:
    import torch

    backend = LocalBackend.from_pretrained(str(tiny_model_dir), batch_size=4, precision="bfloat16")
    assert backend.bf16 and next(backend.model.parameters()).dtype == torch.bfloat16
    generations = backend.generate(CONVERSATIONS[:2], SAMPLING, seed=1)
    assert len(generations) == 2 and all(g.completion_tokens >= 1 for g in generations)


def test_local_backend_needs_a_chat_template(local: LocalBackend) -> None:
    class NoTemplate:
        chat_template = None

    with pytest.raises(BackendError, match="no chat template"):
        LocalBackend(local.model, NoTemplate(), model_name="x")


# ----- OpenAI-compatible, against our own server -------------------------------------------------------------
class RecordingBackend:
    """A real LocalBackend that also records the size of every batch it is asked for."""

    def __init__(self, inner: LocalBackend):
        self.inner = inner
        self.model_name = inner.model_name
        self.batch_sizes: list[int] = []

    def generate(self, batch: Sequence[Sequence[Message]], sampling: SamplingSettings, seed: int) -> list[Generation]:
        self.batch_sizes.append(len(batch))
        return self.inner.generate(batch, sampling, seed)


def test_openai_backend_against_our_server_on_loopback(local: LocalBackend) -> None:
    recording = RecordingBackend(local)
    app = create_app(recording, served_name="tiny", max_batch=8, batch_window_ms=50)
    with serve(app) as url:
        models = httpx.get(f"{url}/v1/models").json()
        assert [m["id"] for m in models["data"]] == ["tiny"]
        client = OpenAIBackend(f"{url}/v1", "tiny", max_concurrency=5)
        generations = client.generate(CONVERSATIONS, SAMPLING, seed=3)
        client.close()
    assert len(generations) == len(CONVERSATIONS)
    assert all(g.prompt_tokens > 0 and 1 <= g.completion_tokens <= SAMPLING.max_new_tokens for g in generations)
    assert sum(recording.batch_sizes) == len(CONVERSATIONS)
    assert max(recording.batch_sizes) > 1  # concurrent requests were gathered into batched generate calls


def test_server_honours_request_seeds_however_requests_are_batched(local: LocalBackend) -> None:
    direct = [g.text for g in local.generate(CONVERSATIONS, SAMPLING, seed=5)]
    for max_batch in (1, 8):
        with serve(create_app(local, served_name="tiny", max_batch=max_batch, batch_window_ms=20)) as url:
            client = OpenAIBackend(url, "tiny", max_concurrency=5)
            served = [g.text for g in client.generate(CONVERSATIONS, SAMPLING, seed=5)]
            client.close()
        assert served == direct, max_batch


def test_server_refuses_unknown_models_and_streaming_without_retrying(local: LocalBackend) -> None:
    with serve(create_app(local, served_name="tiny")) as url:
        client = OpenAIBackend(url, "other-model", max_retries=3)
        start = time.monotonic()
        with pytest.raises(BackendError, match=r"HTTP 404: .*not served here"):
            client.generate(CONVERSATIONS[:1], SAMPLING, seed=0)
        assert time.monotonic() - start < 5
        client.close()
        response = httpx.post(f"{url}/v1/chat/completions", json={"messages": CONVERSATIONS[0], "stream": True})
        assert response.status_code == 400 and "stream" in response.text


# ----- OpenAI-compatible, against fault-injecting servers ----------------------------------------------------
def completion(text: str = "fine") -> dict:
    return {"choices": [{"message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2}}


def test_retries_429_and_5xx_honouring_retry_after() -> None:
    app = FastAPI()
    calls: list[float] = []

    @app.post("/v1/chat/completions")
    def flaky() -> JSONResponse:
        calls.append(time.monotonic())
        if len(calls) <= 2:
            return JSONResponse({"error": "slow down"}, status_code=429, headers={"Retry-After": "0"})
        if len(calls) == 3:
            return JSONResponse({"error": "overloaded"}, status_code=503)
        return JSONResponse(completion("after retries"))

    with serve(app) as url:
        client = OpenAIBackend(url, "m", max_retries=5, backoff_s=0.01)
        [generation] = client.generate(CONVERSATIONS[:1], SAMPLING, seed=0)
    assert generation.text == "after retries"
    assert generation.completion_tokens == 2
    assert len(calls) == 4


def test_gives_up_after_the_retry_budget_with_a_clear_error() -> None:
    app = FastAPI()

    @app.post("/v1/chat/completions")
    def broken() -> JSONResponse:
        return JSONResponse({"error": "boom"}, status_code=500)

    @app.post("/slow/v1/chat/completions")
    def slow() -> JSONResponse:
        time.sleep(1.0)
        return JSONResponse(completion())

    with serve(app) as url:
        client = OpenAIBackend(url, "m", max_retries=2, backoff_s=0.01)
        with pytest.raises(BackendError, match=r"gave up after 3 attempts: .*HTTP 500"):
            client.generate(CONVERSATIONS[:1], SAMPLING, seed=0)
        slow_client = OpenAIBackend(f"{url}/slow", "m", max_retries=1, timeout_s=0.2, backoff_s=0.01)
        with pytest.raises(BackendError, match="ReadTimeout"):
            slow_client.generate(CONVERSATIONS[:1], SAMPLING, seed=0)
    unreachable = OpenAIBackend("http://127.0.0.1:9", "m", max_retries=0)
    with pytest.raises(BackendError, match="ConnectError"):
        unreachable.generate(CONVERSATIONS[:1], SAMPLING, seed=0)


def test_api_key_comes_from_the_environment_and_is_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "sk-test-" + "x" * 24
    app = FastAPI()
    seen: list[str | None] = []

    @app.post("/v1/chat/completions")
    async def check(request: Request) -> JSONResponse:
        seen.append(request.headers.get("authorization"))
        return JSONResponse({"error": "bad request"}, status_code=400)

    with pytest.raises(BackendError, match="environment variable MY_ENDPOINT_KEY .* is not set"):
        OpenAIBackend("http://127.0.0.1:1", "m", api_key_env="MY_ENDPOINT_KEY")
    monkeypatch.setenv("MY_ENDPOINT_KEY", secret)
    with serve(app) as url:
        client = OpenAIBackend(url, "m", api_key_env="MY_ENDPOINT_KEY")
        with pytest.raises(BackendError) as info:
            client.generate(CONVERSATIONS[:1], SAMPLING, seed=0)
    assert seen == [f"Bearer {secret}"]
    assert secret not in str(info.value)
    assert secret not in repr(client)


def test_malformed_response_is_a_clear_error() -> None:
    app = FastAPI()

    @app.post("/v1/chat/completions")
    def odd() -> JSONResponse:
        return JSONResponse({"result": "no choices here"})

    with serve(app) as url, pytest.raises(BackendError, match="not a chat completion response"):
        OpenAIBackend(url, "m").generate(CONVERSATIONS[:1], SAMPLING, seed=0)


def test_prefill_pieces_hold_at_most_max_batch_tokens() -> None:
    from tools.decoding import prefill_pieces

    lengths = [10, 20, 20, 30, 40, 60, 200]
    pieces = prefill_pieces(lengths, 100)
    assert pieces == [[0, 1, 2], [3, 4], [5], [6]]  # 4 x 30 > 100, 3 x 60 > 100, one row always
    assert sorted(i for p in pieces for i in p) == list(range(len(lengths)))


def test_small_batches_and_prefill_pieces_give_the_same_texts(local: LocalBackend) -> None:
    narrow = LocalBackend(local.model, local.tokenizer, batch_size=2, precision="float32", max_batch_tokens=64)
    wide = LocalBackend(local.model, local.tokenizer, batch_size=32, precision="float32", max_batch_tokens=4096)
    for sampling in (GREEDY, SAMPLING):
        assert [g.text for g in narrow.generate(CONVERSATIONS, sampling, seed=3)] == \
            [g.text for g in wide.generate(CONVERSATIONS, sampling, seed=3)]


def test_bf16_leaves_the_callers_fp32_model_alone(local: LocalBackend) -> None:
    import torch

    backend = LocalBackend(local.model, local.tokenizer, precision="bfloat16")
    assert next(backend.model.parameters()).dtype == torch.bfloat16
    assert next(local.model.parameters()).dtype == torch.float32
