"""A zygote for the crash suite: imports the agent once, then forks a fresh child per ``synthgen`` command.

Importing torch, transformers and the agent takes 10-20 s on a busy 2-core machine; a suite that kills a run a
dozen times would spend most of its time importing. This process imports everything (and runs no torch op, so
no thread pool exists yet and forking is safe), then serves commands on stdin, one JSON object per line:

- ``{"argv": ["run", ...], "env": {...}, "log": "/path"}``: fork a child that runs ``synthgen <argv>`` with the
  extra environment, stdout and stderr to ``log``; answers ``{"pid": N}``. The test kills it with SIGKILL.
- ``{"wait": N, "timeout": S}``: reap child N; answers ``{"pid": N, "returncode": code}`` (``-9`` for SIGKILL,
  ``null`` if it is still running after S seconds).

Each child is a new process with nothing of the agent's state in memory: everything it knows about the run
comes from the run folder, as after a real crash.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path


def _preload() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import peft  # noqa: F401
    import torch  # noqa: F401
    import transformers  # noqa: F401

    import agent.cli
    import agent.pipeline  # noqa: F401
    import tools.backends
    import tools.evaluate
    import tools.generate
    import tools.quality
    import tools.tasks
    import tools.train  # noqa: F401


def _child(argv: list[str], env: dict[str, str], log: str) -> None:
    """In the forked child: run the command and exit without returning to the zygote's loop."""
    code = 1
    try:
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
        sys.stdout = os.fdopen(1, "w", buffering=1)
        sys.stderr = os.fdopen(2, "w", buffering=1)
        os.environ.update(env)
        from agent.cli import app

        try:
            app(args=argv, prog_name="synthgen")
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:  # the child must never fall back into the zygote's command loop
        import traceback

        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _wait(pid: int, timeout: float) -> int | None:
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.05)


def main() -> None:
    _preload()
    print(json.dumps({"ready": os.getpid()}), flush=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        if "argv" in request:
            pid = os.fork()
            if pid == 0:
                _child(request["argv"], request.get("env", {}), request["log"])
            print(json.dumps({"pid": pid}), flush=True)
        elif "wait" in request:
            code = _wait(int(request["wait"]), float(request.get("timeout", 600)))
            print(json.dumps({"pid": request["wait"], "returncode": code}), flush=True)


if __name__ == "__main__":
    main()
