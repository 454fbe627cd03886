"""A small OpenAI-compatible server (``/v1/chat/completions``, ``/v1/models``) over a local backend.

Concurrent requests with the same sampling settings are gathered into one batched generation call (up to
``max_batch`` requests, waiting at most ``batch_window_ms`` for company), so many clients share the batched
decoder. With a :class:`~tools.backends.LocalBackend` every request is sampled from its own seed whatever it
is batched with, so a request with a seed gets the same text as ``LocalBackend.generate_rows`` would give it.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import Future
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

from fastapi import FastAPI, HTTPException
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from tools.backends import Backend, Generation, LocalBackend, Message, SamplingSettings


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: str
    text: str | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str | list[ContentPart] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            if any(p.type != "text" for p in self.content):
                raise HTTPException(400, "only text content parts are supported")
            return "".join(p.text or "" for p in self.content)
        return self.content or ""


class ChatCompletionRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    messages: list[ChatMessage] = Field(min_length=1)
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    seed: int | None = None
    n: int = 1
    stream: bool = False


@dataclass
class _Job:
    messages: list[Message]
    sampling: SamplingSettings
    seed: int
    future: Future[Generation] = field(default_factory=Future)


class MicroBatcher:
    """Gathers concurrent jobs with equal sampling settings into batched backend calls on one worker thread."""

    def __init__(self, backend: Backend, *, max_batch: int = 8, batch_window_ms: float = 5.0):
        self.backend = backend
        self.max_batch = max_batch
        self.window_s = batch_window_ms / 1000
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="openai-server-batcher", daemon=True)
        self._held: list[_Job] = []

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=30)

    def submit(self, messages: list[Message], sampling: SamplingSettings, seed: int) -> Future[Generation]:
        job = _Job(messages, sampling, seed)
        self._queue.put(job)
        return job.future

    def _next(self, timeout: float | None) -> _Job | None:
        if self._held:
            return self._held.pop(0)
        return self._queue.get(timeout=timeout)

    def _run(self) -> None:
        while True:
            first = self._next(None)
            if first is None:
                return
            batch = [first]
            deadline = time.monotonic() + self.window_s
            skipped: list[_Job] = []
            stop = False
            while len(batch) < self.max_batch:
                try:
                    job = self._next(max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if job is None:
                    stop = True
                    break
                (batch if job.sampling == first.sampling else skipped).append(job)
            self._held = skipped + self._held
            self._execute(batch)
            if stop:
                for job in self._held:
                    job.future.set_exception(RuntimeError("server shutting down"))
                return

    def _execute(self, batch: Sequence[_Job]) -> None:
        messages = [j.messages for j in batch]
        try:
            if isinstance(self.backend, LocalBackend):
                generations = self.backend.generate_rows(messages, batch[0].sampling, [j.seed for j in batch])
            else:
                generations = self.backend.generate(messages, batch[0].sampling, batch[0].seed)
        except Exception as exc:
            for job in batch:
                job.future.set_exception(exc)
            return
        for job, generation in zip(batch, generations, strict=True):
            job.future.set_result(generation)


def create_app(backend: Backend, *, served_name: str | None = None, max_batch: int = 8,
               batch_window_ms: float = 5.0, default_max_tokens: int = 256) -> FastAPI:
    """The FastAPI app serving ``backend`` under the model name ``served_name``."""
    name = served_name or backend.model_name
    batcher = MicroBatcher(backend, max_batch=max_batch, batch_window_ms=batch_window_ms)
    created = int(time.time())

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        batcher.start()
        try:
            yield
        finally:
            await asyncio.to_thread(batcher.stop)

    api = FastAPI(title="SynthGen OpenAI-compatible server", lifespan=lifespan)

    @api.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @api.get("/v1/models")
    def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": name, "object": "model", "created": created,
                                            "owned_by": "synthgen"}]}

    @api.post("/v1/chat/completions")
    async def chat_completions(request: ChatCompletionRequest) -> JSONResponse:
        if request.stream:
            raise HTTPException(400, "stream=true is not supported by this server")
        if request.n != 1:
            raise HTTPException(400, f"n={request.n} is not supported; send n=1")
        if request.model is not None and request.model != name:
            raise HTTPException(404, f"model {request.model!r} is not served here; this server serves {name!r}")
        messages = [{"role": m.role if m.role != "developer" else "system", "content": m.text()}
                    for m in request.messages]
        sampling = SamplingSettings(temperature=request.temperature, top_p=request.top_p,
                                    max_new_tokens=request.max_completion_tokens or request.max_tokens
                                    or default_max_tokens)
        seed = request.seed if request.seed is not None else uuid.uuid4().int & 0x7FFFFFFF
        try:
            generation = await asyncio.wrap_future(batcher.submit(messages, sampling, seed))
        except Exception as exc:
            return JSONResponse({"error": {"message": f"{type(exc).__name__}: {exc}", "type": "server_error"}},
                                status_code=500)
        return JSONResponse({
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": name,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": generation.text},
                         "finish_reason": generation.finish_reason}],
            "usage": {"prompt_tokens": generation.prompt_tokens,
                      "completion_tokens": generation.completion_tokens,
                      "total_tokens": generation.prompt_tokens + generation.completion_tokens},
        })

    return api
