"""The ``synthgen`` command line: the Typer app and its commands, one module per command group.

- :mod:`agent.cli.run`: ``run``, ``resume`` (what they show: :mod:`agent.cli.display`)
- :mod:`agent.cli.config_doc`: ``config-doc``
- :mod:`agent.cli.runs`: ``runs``, ``status``, ``trace``, ``report``, ``replay``
- :mod:`agent.cli.data`: ``profile``
- :mod:`agent.cli.model`: ``model train``, ``model score``
- :mod:`agent.cli.generate`: ``generate``
- :mod:`agent.cli.flock_sim`: ``flock-sim serve``
- :mod:`agent.cli.serve_openai`: ``serve-openai``
"""

from __future__ import annotations

import logging
import os
from typing import Annotated

import typer

from agent.cli import config_doc, data, flock_sim, generate, model, run, runs, serve_openai
from agent.cli.common import LogLevel, SynthgenGroup, console, setup_logging

app = typer.Typer(
    name="synthgen",
    help="SynthGen Agent: targeted synthetic data and LoRA training for FLock.io AI Arena tasks.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    cls=SynthgenGroup,
)


def _show_version(value: bool) -> None:
    if value:
        from tools.versions import software_versions

        found = software_versions()
        console.print(f"synthgen {found.pop('synthgen-agent', 'unknown')} ("
                      + ", ".join(f"{name} {version}" for name, version in found.items()) + ")",
                      markup=False, highlight=False)
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_show_version, is_eager=True,
                                          help="Print the version (and the libraries') and exit")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug messages of synthgen and the "
                                                                   "libraries' info messages")] = False,
    log_level: Annotated[LogLevel, typer.Option(help="Messages of synthgen shown from this level on; warning or "
                                                     "error also hides the plain progress lines")] = "info",
) -> None:
    """SynthGen Agent: targeted synthetic data and LoRA training for FLock.io AI Arena tasks."""
    setup_logging(log_level, verbose)
    # httpx logs whole request URLs at INFO, presigned download links included: never let them reach a log.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # bitsandbytes announces an optional CPU kernel package on import; it changes nothing here.
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    # Our own progress bars (with ETA) cover model loading; the libraries' bars would interleave with them.
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")  # read when datasets is first imported
    # transformers' records go through our handler (its own would hold the stderr of its first use) at our levels.
    hf_logging.disable_default_handler()
    hf_logging.enable_propagation()
    hf_logging.set_verbosity(logging.INFO if verbose else logging.WARNING)
    import warnings

    # Noise with nothing to act on: peft looks the base model up on the Hub when saving (offline runs name the
    # Hub id but load local weights), and transformers 5 renamed its gradient-checkpointing properties.
    for text in ("Unable to fetch remote file", "Could not find a config file in", ".*is deprecated and will be "
                 "removed in v6"):
        warnings.filterwarnings("ignore", message=text)


for command in (data.profile, run.run, run.resume, runs.runs, runs.status, runs.trace, runs.report, runs.replay):
    app.command()(command)
app.command("config-doc")(config_doc.config_doc)
app.add_typer(flock_sim.app, name="flock-sim")
app.add_typer(model.app, name="model", help="Train a LoRA adapter or score a model with FLock's metric.")
app.command("generate")(generate.generate_command)
app.command("serve-openai")(serve_openai.serve_openai)


def main() -> None:  # pragma: no cover - console entry point
    app()


__all__ = ["app", "main"]
