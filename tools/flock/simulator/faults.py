"""Fault injection for the simulator (issue 9 item 1), off unless rules are added.

A rule names an endpoint, a fault kind and how many requests it hits. The ASGI middleware consumes rules as
requests arrive:

- ``rate_limit``: 429 with ``Retry-After``;
- ``server_error``: ``status`` (500 as FastAPI's JSON, 502/503/504 as a proxy's HTML page);
- ``slow``: the request is read, then handled ``delay_s`` later (past a client's timeout), even if the
  client has gone;
- ``drop``: the connection closes after the status line, before the body (a reset mid-response);
- ``lose_response``: the request is fully processed (a submission is recorded), then the connection drops;
- ``truncate``: (storage) the body stops mid-line and ends cleanly, without a Content-Length;
- ``expire_link``: (storage) 403 "Request has expired", as S3 answers an expired presigned URL.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Endpoint = Literal["get_task", "list_tasks", "submit_result", "wallet_submissions", "request_assignment",
                   "update_assignment", "stats_models", "health", "storage"]
FaultKind = Literal["rate_limit", "server_error", "slow", "drop", "lose_response", "truncate", "expire_link"]

_ROUTES: list[tuple[re.Pattern[str], Endpoint]] = [
    (re.compile(r"^/api/v1/tasks/get/?$"), "get_task"),
    (re.compile(r"^/api/v1/tasks/list/?$"), "list_tasks"),
    (re.compile(r"^/api/v1/tasks/submit-result/?$"), "submit_result"),
    (re.compile(r"^/api/v1/tasks/wallet-submissions/?$"), "wallet_submissions"),
    (re.compile(r"^/api/v1/tasks/request-validation-assignment/[^/]+/?$"), "request_assignment"),
    (re.compile(r"^/api/v1/tasks/update-validation-assignment/[^/]+/?$"), "update_assignment"),
    (re.compile(r"^/api/v1/stats/models/?$"), "stats_models"),
    (re.compile(r"^/api/v1/health/?$"), "health"),
    (re.compile(r"^/storage/"), "storage"),
]


def endpoint_of(path: str) -> Endpoint | None:
    return next((name for pattern, name in _ROUTES if pattern.match(path)), None)


class FaultRule(BaseModel):
    """Inject ``kind`` into the next ``times`` requests to ``endpoint``."""

    model_config = ConfigDict(extra="forbid")

    endpoint: Endpoint
    kind: FaultKind
    times: int = Field(1, ge=1)
    status: int = Field(503, ge=500, le=599)
    retry_after: float = Field(1.0, ge=0)
    delay_s: float = Field(2.0, ge=0)


class FaultPlan:
    """Thread-safe queue of fault rules, consumed in order per endpoint."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[FaultRule] = []
        self.injected: list[tuple[Endpoint, FaultKind]] = []

    def add(self, *rules: FaultRule) -> None:
        with self._lock:
            self._rules.extend(rule.model_copy() for rule in rules)

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def pending(self) -> list[FaultRule]:
        with self._lock:
            return [rule.model_copy() for rule in self._rules]

    def take(self, endpoint: Endpoint) -> FaultRule | None:
        with self._lock:
            for rule in self._rules:
                if rule.endpoint == endpoint:
                    rule.times -= 1
                    if rule.times == 0:
                        self._rules.remove(rule)
                    self.injected.append((endpoint, rule.kind))
                    return rule
        return None


Scope = dict[str, Any]
Message = dict[str, Any]


class FaultMiddleware:
    """Pure ASGI middleware applying a :class:`FaultPlan`; paths outside the API and storage pass untouched."""

    def __init__(self, app: Any, plan: FaultPlan):
        self.app = app
        self.plan = plan

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        endpoint = endpoint_of(scope.get("path", "")) if scope["type"] == "http" else None
        rule = self.plan.take(endpoint) if endpoint else None
        if rule is None:
            await self.app(scope, receive, send)
            return
        if rule.kind == "rate_limit":
            await _respond(send, 429, {"detail": "Too Many Requests"}, {"retry-after": f"{rule.retry_after:g}"})
        elif rule.kind == "server_error":
            if rule.status == 500:
                await _respond(send, 500, {"detail": "Internal Server Error"})
            else:
                page = f"<html><body><h1>{rule.status} Bad Gateway or Unavailable</h1></body></html>"
                await _respond_raw(send, rule.status, page.encode(), "text/html")
        elif rule.kind == "slow":
            # Take the whole request first: the server works on it even if the client has given up meanwhile.
            body = await _read_body(receive)
            await asyncio.sleep(rule.delay_s)
            await self.app(scope, _replay(body, receive), send)
        elif rule.kind == "drop":
            await _drop(send)
        elif rule.kind == "lose_response":
            async def swallow(message: Message) -> None:
                return None

            await self.app(scope, receive, swallow)
            await _drop(send)
        elif rule.kind == "truncate":
            await self.app(scope, receive, _Truncator(send).send)
        elif rule.kind == "expire_link":
            body = (b"<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>AccessDenied</Code>"
                    b"<Message>Request has expired</Message></Error>")
            await _respond_raw(send, 403, body, "application/xml")


async def _read_body(receive: Any) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Any) -> Any:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return dict(await receive())

    return replay


async def _respond(send: Any, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
    await _respond_raw(send, status, json.dumps(body).encode(), "application/json", headers)


async def _respond_raw(send: Any, status: int, body: bytes, content_type: str,
                       headers: dict[str, str] | None = None) -> None:
    raw_headers = [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())]
    raw_headers += [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def _drop(send: Any) -> None:
    # Promise a body and never send it: the server closes the connection mid-response.
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"4096")]})


class _Truncator:
    """Forwards a response with its Content-Length removed and its body cut mid-line at about half its size."""

    def __init__(self, send: Any):
        self._send = send
        self._limit: int | None = None
        self._sent = 0
        self._done = False

    async def send(self, message: Message) -> None:
        if self._done:
            return
        if message["type"] == "http.response.start":
            headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"content-length"]
            declared = next((int(v) for k, v in message.get("headers", []) if k.lower() == b"content-length"), 0)
            self._limit = max(1, declared // 2)
            await self._send({**message, "headers": headers})
            return
        body: bytes = message.get("body", b"")
        assert self._limit is not None
        room = self._limit - self._sent
        if len(body) < room and message.get("more_body", False):
            self._sent += len(body)
            await self._send(message)
            return
        cut = body[:room]
        while cut.endswith(b"\n"):  # end inside a line, so the damage is visible
            cut = cut[:-1]
        self._done = True
        await self._send({"type": "http.response.body", "body": cut, "more_body": False})
