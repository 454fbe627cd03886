"""Reading text-to-SQL records: the schema is in the prompt as CREATE TABLE statements, the answer is one query."""

from __future__ import annotations

import re
from dataclasses import dataclass

from tools.data import FlockRecord

CREATE_TABLE = re.compile(r"CREATE\s+TABLE\b.*?\)\s*;", re.IGNORECASE | re.DOTALL)
_QUESTION_PREFIX = re.compile(r"^(question|q|input|request)\s*:\s*", re.IGNORECASE)


@dataclass(frozen=True)
class Text2SQLPrompt:
    """The parts of a text-to-SQL user turn."""

    schema: str
    question: str


def parse_prompt(user_text: str) -> Text2SQLPrompt:
    """Split a user turn into its CREATE TABLE statements and the question that follows them."""
    statements = CREATE_TABLE.findall(user_text)
    schema = "\n".join(s.strip() for s in statements)
    end = 0
    for match in CREATE_TABLE.finditer(user_text):
        end = match.end()
    rest = user_text[end:].strip() if statements else user_text.strip()
    question = _QUESTION_PREFIX.sub("", rest).strip()
    return Text2SQLPrompt(schema=schema, question=question)


def prompt_of(record: FlockRecord) -> Text2SQLPrompt:
    """Schema and question of a record; a schema given in the system prompt counts too."""
    prompt = parse_prompt(record.first_user_text())
    if not prompt.schema and record.system:
        system_prompt = parse_prompt(record.system)
        return Text2SQLPrompt(schema=system_prompt.schema, question=prompt.question)
    return prompt
