"""``synthgen config-doc``: every configuration field with its default and meaning, and the base models FLock has
templates for, as a table (a terminal), plain lines (a pipe) or Markdown (for a document)."""

from __future__ import annotations

from typing import Annotated, Literal

import typer
from rich.table import Table

from agent.cli.common import console

DocFormat = Literal["table", "plain", "markdown"]


def _markdown_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def config_doc(
    output: Annotated[DocFormat | None, typer.Option("--format", help="table (default in a terminal), plain "
                                                                        "(default in a pipe) or markdown")] = None,
) -> None:
    """Every configuration field with its default and meaning, then the base models FLock has templates for."""
    from agent.config import describe_fields
    from tools.models import BASE_MODELS

    fields = describe_fields()
    models = [(hub_id, info.template, f"{info.params / 1e9:.2f}B", "yes" if info.flock_whitelisted else "no")
              for hub_id, info in sorted(BASE_MODELS.items())]
    chosen = output or ("table" if console.is_terminal else "plain")
    if chosen == "markdown":
        lines = ["# synthgen configuration", "",
                 "YAML or TOML keys; dotted names are nested sections (`budget.max_iterations` is `max_iterations` "
                 "under `budget:`).", "", "| key | default | meaning |", "|---|---|---|"]
        lines += [f"| `{name}` | `{_markdown_cell(default)}` | {_markdown_cell(meaning)} |"
                  for name, default, meaning in fields]
        lines += ["", "## base_model: the models FLock has templates for", "",
                  "| Hub id | FLock template | parameters | scored by FLock's validators |", "|---|---|---:|---|"]
        lines += [f"| `{hub_id}` | `{template}` | {size} | {scored} |" for hub_id, template, size, scored in models]
        typer.echo("\n".join(lines))
    elif chosen == "plain":
        width = max(len(name) for name, _, _ in fields)
        for name, default, meaning in fields:
            typer.echo(f"{name:<{width}}  = {default}\n{'':<{width}}    {meaning}")
        typer.echo("\nbase_model: the models FLock has templates for (Hub id, template, parameters, scored by "
                   "FLock's validators)")
        for hub_id, template, size, scored in models:
            typer.echo(f"  {hub_id}  {template}  {size}  {scored}")
    else:
        table = Table(title="synthgen configuration (YAML/TOML keys; dotted names are nested sections)")
        for column in ("key", "default", "meaning"):
            table.add_column(column, overflow="fold")
        for name, default, meaning in fields:
            table.add_row(name, default, meaning)
        console.print(table)
        bases = Table(title="base_model: the models FLock has templates for")
        for column in ("Hub id", "FLock template", "parameters", "scored by FLock's validators"):
            bases.add_column(column)
        for row in models:
            bases.add_row(*row)
        console.print(bases)
