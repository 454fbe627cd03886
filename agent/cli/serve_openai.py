"""``synthgen serve-openai``: a local model behind an OpenAI-compatible API (tools/openai_server.py)."""

from __future__ import annotations

from typing import Annotated

import typer

from tools.models import DEFAULT_MODEL


def serve_openai(
    model: Annotated[str, typer.Option(metavar="MODEL", help="Hub id, folder or GGUF file")] = DEFAULT_MODEL,
    host: Annotated[str, typer.Option(metavar="HOST", help="Address to bind (default: loopback only)")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8000,
    served_name: Annotated[str | None, typer.Option(metavar="NAME", help="Model name clients send (default: "
                                                                          "--model)")] = None,
    max_batch: Annotated[int, typer.Option(min=1, help="Requests per batched generate call")] = 8,
    batch_window_ms: Annotated[float, typer.Option(min=0, help="How long a request waits for company")] = 5.0,
    batch_size: Annotated[int, typer.Option(min=1, help="Conversations per forward pass")] = 32,
    precision: Annotated[str, typer.Option(metavar="auto|float32|bfloat16", help="Weights' precision")] = "auto",
) -> None:
    """Serve a local model at http://HOST:PORT/v1 (chat completions and model list)."""
    import uvicorn

    from tools.backends import LocalBackend
    from tools.openai_server import create_app

    if precision not in ("auto", "float32", "bfloat16"):
        raise typer.BadParameter(f"precision must be auto, float32 or bfloat16, got {precision!r}")
    backend = LocalBackend.from_pretrained(model, batch_size=batch_size, precision=precision)  # type: ignore[arg-type]
    api = create_app(backend, served_name=served_name or model, max_batch=max_batch,
                     batch_window_ms=batch_window_ms)
    uvicorn.run(api, host=host, port=port, log_level="info")
