"""Prompt files and their loader.

Every prompt the project sends to a model lives in this folder as a Markdown file with a YAML front matter block
naming its variables::

    ---
    id: text2sql_question
    variables: [schema, sql, examples]
    ---
    (Jinja2 body)

Rendering checks that exactly the declared variables are given, so a prompt and its caller cannot drift apart.
The hash of the file and of each rendering is recorded in provenance and traces (replay uses it to name a changed
prompt).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jinja2
import yaml

PROMPT_DIR = Path(__file__).resolve().parent
_ENV = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=False, autoescape=False)


class PromptError(ValueError):
    """A prompt file is missing or malformed, or was rendered with the wrong variables."""


@dataclass(frozen=True)
class Prompt:
    id: str
    path: Path
    variables: tuple[str, ...]
    body: str
    file_hash: str

    def render(self, **values: Any) -> str:
        missing = set(self.variables) - set(values)
        extra = set(values) - set(self.variables)
        if missing or extra:
            raise PromptError(
                f"prompt {self.id!r} ({self.path.name}): missing variables {sorted(missing)}, "
                f"unexpected {sorted(extra)}"
            )
        return _compiled(self.body).render(**values).strip()


@cache
def _compiled(body: str) -> jinja2.Template:
    return _ENV.from_string(body)


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


@cache
def load_prompt(prompt_id: str, directory: Path = PROMPT_DIR) -> Prompt:
    """Load ``<directory>/<prompt_id>.md``."""
    path = directory / f"{prompt_id}.md"
    if not path.is_file():
        known = sorted(p.stem for p in directory.glob("*.md"))
        raise PromptError(f"no prompt file {path}; known prompts: {', '.join(known) or 'none'}")
    raw = path.read_text(encoding="utf-8")
    if not raw.startswith("---\n"):
        raise PromptError(f"{path}: line 1: expected a '---' front matter block")
    try:
        header_text, body = raw[4:].split("\n---\n", 1)
        header = yaml.safe_load(header_text) or {}
    except (ValueError, yaml.YAMLError) as exc:
        raise PromptError(f"{path}: malformed front matter: {exc}") from None
    if header.get("id") != prompt_id:
        raise PromptError(f"{path}: front matter id {header.get('id')!r} does not match the file name")
    variables = header.get("variables") or []
    if not isinstance(variables, list) or not all(isinstance(v, str) for v in variables):
        raise PromptError(f"{path}: front matter 'variables' must be a list of names")
    try:
        _ENV.parse(body)
    except jinja2.TemplateSyntaxError as exc:
        raise PromptError(f"{path}: line {exc.lineno + header_text.count(chr(10)) + 2}: {exc.message}") from None
    return Prompt(id=prompt_id, path=path, variables=tuple(variables), body=body, file_hash=text_hash(raw))
