"""What every ``synthgen`` command shares: the consoles, the one-line error, exit codes, the runs-folder option."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

console = Console()
err_console = Console(stderr=True)

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_REPLAY_MISMATCH, EXIT_INTERRUPTED = 0, 1, 2, 3, 130

RunsDir = Annotated[Path, typer.Option("--runs-dir", help="Folder holding the run folders")]


def fail(message: str, code: int = EXIT_BAD_INPUT) -> typer.Exit:
    """Print one clear error line and return the Exit to raise (whitespace folded, never wrapped, brackets in the
    message shown as written rather than read as markup)."""
    err_console.print(f"[bold red]error:[/] {escape(' '.join(message.split()))}", soft_wrap=True)
    return typer.Exit(code)


def number(value: Any) -> str:
    """A score with four decimals, or a dash where there is none."""
    return f"{value:.4f}" if isinstance(value, int | float) else "—"
