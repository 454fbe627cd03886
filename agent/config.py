"""Run configuration: one validated model, loaded from YAML or TOML, overridden by command-line flags.

Every field carries its documentation (``synthgen config-doc`` prints them all). Unknown keys, wrong types and
out-of-range values are refused with one line naming the file and the field.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from agent.state import LearningSettings, PlannerKind, RunBudget
from tools.tracking import TrackingConfig
from tools.train import TrainConfig

DEFAULT_BASE_MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"


class ConfigError(ValueError):
    """A configuration problem, phrased as one line for the user."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class TaskSource(_Section):
    kind: Literal["demo", "demo-fc", "dir", "flock"] = Field(
        default="demo",
        description="demo: the bundled text-to-SQL task on an in-process FLock simulator; demo-fc: the bundled "
                    "function-calling task; dir: a local task folder on the simulator; flock: the live FLock API")
    task_id: int | None = Field(default=None, description="FLock task id (kind=flock)")
    task_dir: Path | None = Field(default=None, description="task folder with task.json and JSONL files (kind=dir)")
    api_base_url: str = Field(default="https://fed-ledger-prod.flock.io/api/v1",
                              description="FedLedger API base URL (kind=flock)")
    api_key_env: str = Field(default="FLOCK_API_KEY", description="environment variable holding the FLock API key")
    timeout_s: float = Field(default=30.0, gt=0, le=600, description="FedLedger API request timeout, seconds")
    retry_attempts: int = Field(default=5, ge=1, le=20, description="attempts per FedLedger call (429, 5xx, "
                                                                   "timeouts and dropped connections are retried)")
    retry_wait_s: float = Field(default=1.0, ge=0, le=60, description="first wait before a FedLedger retry, "
                                                                     "doubled per attempt (a Retry-After wins)")
    skip_bad_lines: bool = Field(default=False, description="skip training-set lines that fail validation and "
                                 "report each one (--skip-bad-lines); by default the first one stops the run")


class _ModelEndpoint(_Section):
    """A model that runs here or behind an endpoint (the generator and the planner)."""

    model: str = Field(default=DEFAULT_BASE_MODEL, description="the model: a Hub id, folder or GGUF file when it "
                                                               "runs here, else the endpoint's model name")
    base_url: str | None = Field(default=None, description="the endpoint's base URL (generator backend=openai, "
                                                          "llm planner)")
    api_key_env: str = Field(default="SYNTHGEN_LLM_API_KEY", description="environment variable holding the "
                                                                         "endpoint's API key")


class GeneratorConfig(_ModelEndpoint):
    backend: Literal["local", "openai", "none"] = Field(
        default="local", description="local: transformers on this machine; openai: any OpenAI-compatible server; "
                                     "none: no model, deterministic writers only")
    temperature: float = Field(default=0.7, ge=0, le=2, description="sampling temperature")
    max_new_tokens: int = Field(default=64, ge=8, le=4096, description="tokens per generated field")
    batch_size: int = Field(default=16, ge=1, le=512, description="drafts per generation batch")
    concurrency: int = Field(default=8, ge=1, le=256, description="parallel requests (backend=openai)")


class PlannerConfig(_ModelEndpoint):
    kind: PlannerKind = Field(
        default="local", description="llm: a LangChain chat model over an API; local: a transformers model with "
                                     "JSON-schema-constrained decoding; policy: the deterministic policy only")
    provider: Literal["openai", "huggingface"] = Field(default="openai",
                                                       description="llm planner: LangChain integration to use")


#: The agent's training defaults where they differ from the trainer's: every round retrains a fresh adapter on all
#: data so far, so one epoch per round.
AGENT_TRAIN_DEFAULTS: dict[str, Any] = {"epochs": 1}
#: Earlier names of ``train:`` keys, still accepted in configuration files.
TRAIN_KEY_ALIASES = {"lora_rank": "lora_r"}
#: TrainConfig fields the run sets for every training (from these settings), so a configuration may not.
RUN_SET_TRAIN_FIELDS = {"seed": "seed", "max_train_tokens": "budget.max_train_tokens",
                        "max_seconds": "budget.max_wall_seconds"}


class EvalSettings(_Section):
    task_metric: bool = Field(default=True, description="also compute the generation-based task metric "
                                                       "(e.g. SQL execution accuracy) of the base model and the "
                                                       "final adapter on test, within learning.max_eval_share; "
                                                       "dev is scored by BPC only")
    max_new_tokens: int = Field(default=128, ge=8, description="decoding length for task-metric predictions")
    dev_fraction: float = Field(default=0.12, gt=0, lt=0.5, description="share of the training file held as dev")
    test_fraction: float = Field(default=0.12, gt=0, lt=0.5, description="share held as test (reported only)")


class PublishSettings(_Section):
    kind: Literal["auto", "local", "hub"] = Field(
        default="auto", description="auto: the Hub for live FLock tasks, the simulator's local store otherwise; "
                                    "local: a folder store (what a self-hosted simulator's validator reads); hub: "
                                    "the Hugging Face Hub (HF_TOKEN, HF_USERNAME)")
    dataset: bool = Field(default=False, description="at the end of a run also publish its synthetic data as a "
                                                     "Hugging Face dataset with a dataset card (same place as "
                                                     "the adapters); the files are in the run's hub/ folder either way")
    dataset_license: str = Field(default="other", description="license named in the dataset card (a Hub license "
                                                               "id; the rows derive from the task's data and the "
                                                               "generator's output)")


class RunConfig(_Section):
    """Everything a run is configured with."""

    task: TaskSource = Field(default_factory=TaskSource)
    base_model: str = Field(default=DEFAULT_BASE_MODEL, description="Hub id of the model the adapter is trained "
                                                                    "on (what FLock validators load); 'auto', and "
                                                                    "for a live task the default too: a model "
                                                                    "FLock's validators accept, picked from the "
                                                                    "task's max_params and this machine's GPU")
    base_model_weights: str | None = Field(default=None, description="load the base model's weights from this "
                                           "folder or GGUF file instead of the Hub (it must stand for base_model)")
    generator: GeneratorConfig = Field(default_factory=GeneratorConfig)
    planner: PlannerConfig = Field(default_factory=PlannerConfig)
    budget: RunBudget = Field(default_factory=RunBudget)
    learning: LearningSettings = Field(default_factory=LearningSettings)
    train: TrainConfig = Field(default_factory=lambda: TrainConfig(**AGENT_TRAIN_DEFAULTS))
    eval: EvalSettings = Field(default_factory=EvalSettings)
    publish: PublishSettings = Field(default_factory=PublishSettings)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    seed: int = Field(default=0, description="seed for splits, generation and training")
    runs_dir: Path = Field(default=Path("runs"), description="where run folders are written")

    @property
    def publishes_to_hub(self) -> bool:
        return self.publish.kind == "hub" or (self.publish.kind == "auto" and self.task.kind == "flock")

    @field_validator("train", mode="before")
    @classmethod
    def _train_defaults_and_aliases(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        renamed = {TRAIN_KEY_ALIASES.get(key, key): setting for key, setting in value.items()}
        return {**AGENT_TRAIN_DEFAULTS, **renamed}

    @field_validator("train")
    @classmethod
    def _run_set_train_fields_untouched(cls, value: TrainConfig) -> TrainConfig:
        trainer_defaults = TrainConfig()
        for name, source in RUN_SET_TRAIN_FIELDS.items():
            if getattr(value, name) != getattr(trainer_defaults, name):
                raise ValueError(f"'{name}' is set for every training from '{source}'; remove it here")
        return value


#: The --quick preset: one round on a smaller budget (4 min 45 s measured on 2 CPU cores, 8 minutes at most).
QUICK_OVERRIDES: dict[str, Any] = {
    # One round on 2 CPU cores in under 5 minutes (measured): 40 synthetic rows, training capped at 30k tokens
    # (about 60% of an epoch of the demo's training split), dev and test scored by BPC only (decoding for SQL
    # execution accuracy would add about 3 minutes).
    "budget": {"max_iterations": 1, "max_synthetic_examples": 40, "max_train_tokens": 30_000,
               "max_wall_seconds": 8 * 60},
    "train": {"epochs": 1},
    "eval": {"task_metric": False},
}


def _deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _known_fields(model: type[BaseModel], path: tuple[str | int, ...]) -> list[str]:
    current: type[BaseModel] = model
    for part in path:
        annotation = getattr(current.model_fields.get(str(part)), "annotation", None)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        current = annotation
    return list(current.model_fields)


def _one_line(exc: ValidationError, source: str, lines: dict[tuple[str, ...], int] | None = None,
              flags: dict[str, str] | None = None) -> str:
    """A validation error as one line: the source (with the line where the key is, for a file; the flag that set
    it, for the command line), the field and what is wrong."""
    err = exc.errors()[0]
    loc = tuple(err["loc"])
    where = ".".join(str(p) for p in loc)
    line = _closest_line(lines or {}, tuple(str(p) for p in loc))
    place = f"{source}:{line}" if line else source
    flag = (flags or {}).get(where)
    if err["type"] == "extra_forbidden":
        known = _known_fields(RunConfig, loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]), known, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else (f" (known: {', '.join(known)})" if known else "")
        return f"{place}: unknown key '{where}'{hint}"
    message = err["msg"].removeprefix("Value error, ")
    return f"{place}: {flag} ({where}): {message}" if flag else f"{place}: {where}: {message}"


def _closest_line(lines: dict[tuple[str, ...], int], loc: tuple[str, ...]) -> int | None:
    """The file line of a key, or of the nearest section above it that the file names."""
    while loc:
        if loc in lines:
            return lines[loc]
        loc = loc[:-1]
    return None


def _yaml_key_lines(text: str) -> dict[tuple[str, ...], int]:
    """Every mapping key of a YAML document, as its path of keys, with its 1-based line."""
    found: dict[tuple[str, ...], int] = {}

    def walk(node: yaml.Node, path: tuple[str, ...]) -> None:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                child = (*path, str(key.value))
                found[child] = key.start_mark.line + 1
                walk(value, child)

    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return found
    if root is not None:
        walk(root, ())
    return found


def _syntax_error(path: Path, exc: Exception) -> ConfigError:
    """A YAML or TOML syntax error as one line with the file, line and column."""
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        started = exc.context_mark
        context = (f" ({exc.context}" + (f" that starts at line {started.line + 1}, column {started.column + 1}"
                                         if started is not None else "") + ")") if exc.context else ""
        return ConfigError(f"{path}:{mark.line + 1}:{mark.column + 1}: not valid YAML: {exc.problem}{context}")
    if isinstance(exc, tomllib.TOMLDecodeError):
        found = re.search(r"\(at line (\d+), column (\d+)\)$", str(exc))
        message = re.sub(r"\s*\(at [^)]*\)$", "", str(exc))
        where = f"{path}:{found.group(1)}:{found.group(2)}" if found else str(path)
        return ConfigError(f"{where}: not valid TOML: {message}")
    kind = "TOML" if path.suffix == ".toml" else "YAML"
    return ConfigError(f"{path}: not valid {kind}: {' '.join(str(exc).split())}")


def read_config_file(path: Path) -> dict[str, Any]:
    """The raw mapping in a YAML or TOML file."""
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    text = path.read_text(encoding="utf-8")
    try:
        data = tomllib.loads(text) if path.suffix == ".toml" else yaml.safe_load(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise _syntax_error(path, exc) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of settings")
    return data


def build_config(file: Path | None = None, overrides: dict[str, Any] | None = None, quick: bool = False,
                 flags: dict[str, str] | None = None) -> RunConfig:
    """File settings, then the quick preset, then command-line overrides (highest priority). ``flags`` names the
    command-line flag of each dotted field, for errors."""
    data = read_config_file(file) if file else {}
    source = str(file) if file else "config"
    merged = _deep_merge(data, QUICK_OVERRIDES) if quick else data
    try:
        config = RunConfig.model_validate(merged)
    except ValidationError as exc:
        lines = _yaml_key_lines(file.read_text(encoding="utf-8")) if file and file.suffix != ".toml" else None
        raise ConfigError(_one_line(exc, source, lines)) from None
    if overrides:
        try:
            config = RunConfig.model_validate(_deep_merge(config.model_dump(), overrides))
        except ValidationError as exc:
            raise ConfigError(_one_line(exc, "command line", flags=flags)) from None
    return config


def unknown_base_model(hub_id: str) -> str | None:
    """Why ``hub_id`` cannot be a base model (FLock has no template for it), or None. Short on purpose: it names
    the closest known ids, not all of them (``synthgen config-doc`` lists them)."""
    from tools.models import BASE_MODELS

    if hub_id in BASE_MODELS:
        return None
    close = [known for known in BASE_MODELS if known.lower() == hub_id.lower()] or \
        difflib.get_close_matches(hub_id, list(BASE_MODELS), n=3, cutoff=0.5)
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    return (f"base_model: {hub_id!r} has no FLock template, so FLock could not score an adapter on it{hint} "
            f"(the {len(BASE_MODELS)} known models: synthgen config-doc)")


def check_environment(config: RunConfig) -> None:
    """Refuse early what cannot work: a missing task folder or API key, a base model FLock has no template for."""
    problem = unknown_base_model(config.base_model)
    if problem:
        raise ConfigError(problem)
    if config.task.kind == "dir":
        folder = config.task.task_dir
        if folder is None:
            raise ConfigError("task.task_dir: required when task.kind is 'dir' (--task-dir DIR)")
        if not folder.is_dir() or not os.access(folder, os.R_OK | os.X_OK):
            raise ConfigError(f"task.task_dir: {folder} is not a readable folder")
        if not (folder / "task.json").is_file():
            raise ConfigError(f"task.task_dir: {folder} has no task.json")
        if not config.task.skip_bad_lines:
            check_training_file(folder)
    if config.task.kind == "flock":
        if config.task.task_id is None:
            raise ConfigError("task.task_id: required for the live FLock API (--task-id N)")
        if not os.environ.get(config.task.api_key_env):
            raise ConfigError(f"the live FLock API needs an API key in ${config.task.api_key_env}")
    if config.publishes_to_hub and config.budget.max_submissions > 0:
        missing = [v for v in ("HF_TOKEN", "HF_USERNAME") if not os.environ.get(v)]
        if missing:
            raise ConfigError(f"publishing to the Hugging Face Hub needs {' and '.join('$' + m for m in missing)}")
    if config.planner.kind == "llm" and not config.planner.base_url and config.planner.provider == "openai" \
            and not os.environ.get(config.planner.api_key_env):
        raise ConfigError(f"the llm planner needs planner.base_url or an API key in ${config.planner.api_key_env}")


def check_training_file(task_dir: Path) -> None:
    """Validate a local task's training file before a run is made for it, so its first bad line is named in the
    user's own file (DataValidationError, TaskFolderError) rather than in the run's downloaded copy."""
    from tools.data import load_jsonl
    from tools.flock.simulator.tasks import load_task_folder

    load_jsonl(load_task_folder(task_dir).files["training_set"])


def describe_fields(defaults: BaseModel | None = None, prefix: str = "") -> list[tuple[str, str, str]]:
    """(dotted name, default, description) for every field a configuration may set, for documentation."""
    defaults = defaults if defaults is not None else RunConfig()
    rows: list[tuple[str, str, str]] = []
    for name, field in type(defaults).model_fields.items():
        default = getattr(defaults, name)
        if isinstance(default, BaseModel):
            rows.extend(describe_fields(default, f"{prefix}{name}."))
        elif not (prefix == "train." and name in RUN_SET_TRAIN_FIELDS):
            rows.append((f"{prefix}{name}", repr(default), (field.description or "").replace("\n", " ")))
    return rows
