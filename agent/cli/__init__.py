"""The ``synthgen`` command line: the Typer app and its commands, one module per command group.

- :mod:`agent.cli.run`: ``run``, ``resume``, ``config-doc``
- :mod:`agent.cli.runs`: ``runs``, ``status``, ``trace``, ``report``, ``replay``
- :mod:`agent.cli.data`: ``profile``
- :mod:`agent.cli.model`: ``model train``, ``model score``
- :mod:`agent.cli.generate`: ``generate``
- :mod:`agent.cli.flock_sim`: ``flock-sim serve``
- :mod:`agent.cli.serve_openai`: ``serve-openai``
"""

from __future__ import annotations

import typer

from agent.cli import data, flock_sim, generate, model, run, runs, serve_openai

app = typer.Typer(
    name="synthgen",
    help="SynthGen Agent: targeted synthetic data and LoRA training for FLock.io AI Arena tasks.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _root() -> None:
    """SynthGen Agent: targeted synthetic data and LoRA training for FLock.io AI Arena tasks."""
    import logging

    # httpx logs whole request URLs at INFO, presigned download links included: never let them reach a log.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # bitsandbytes announces an optional CPU kernel package on import; it changes nothing here.
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    # Our own progress bars (with ETA) cover model loading; the libraries' bars would interleave with them.
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    import warnings

    # Noise with nothing to act on: peft looks the base model up on the Hub when saving (offline runs name the
    # Hub id but load local weights), and transformers 5 renamed its gradient-checkpointing properties.
    for text in ("Unable to fetch remote file", "Could not find a config file in", ".*is deprecated and will be "
                 "removed in v6"):
        warnings.filterwarnings("ignore", message=text)


for command in (data.profile, run.run, run.resume, runs.runs, runs.status, runs.trace, runs.report, runs.replay):
    app.command()(command)
app.command("config-doc")(run.config_doc)
app.add_typer(flock_sim.app, name="flock-sim")
app.add_typer(model.app, name="model", help="Train a LoRA adapter or score a model with FLock's metric.")
app.command("generate")(generate.generate_command)
app.command("serve-openai")(serve_openai.serve_openai)


def main() -> None:  # pragma: no cover - console entry point
    app()


__all__ = ["app", "main"]
