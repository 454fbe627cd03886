"""An ASGI app served by uvicorn on a background thread, for in-process servers (the FLock simulator) and tests.

The socket is bound before the thread starts, so the port is known at once (port 0 takes a free one) and a port
in use fails in :meth:`ThreadedServer.start`, in the caller's thread.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any, Literal

import uvicorn


class ThreadedServer:
    """Serve ``app`` on ``host:port``; use as a context manager, or call :meth:`start` and :meth:`stop`.
    ``lifespan="on"`` runs the app's startup and shutdown handlers; ``name`` names the thread (with the port) and
    ``label`` the server in errors."""

    def __init__(self, app: Any, *, host: str = "127.0.0.1", port: int = 0, lifespan: Literal["on", "off"] = "off",
                 name: str = "asgi-server", label: str = "the server"):
        self.host, self.port, self.name, self.label = host, port, name, label
        self._server = uvicorn.Server(uvicorn.Config(app, log_level="warning", http="h11", lifespan=lifespan,
                                                     timeout_graceful_shutdown=2, access_log=False))
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout_s: float = 15.0) -> ThreadedServer:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        self._sock = sock
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]},
                                        name=f"{self.name}-{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started and self._thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        if not self._server.started:
            self.stop()
            raise RuntimeError(f"{self.label} did not start on {self.host}:{self.port} within {timeout_s}s "
                               "(see the log above)")
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._sock is not None:
            self._sock.close()

    def __enter__(self) -> ThreadedServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
