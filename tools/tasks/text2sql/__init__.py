"""The text-to-SQL task type: its plugin, the records it reads (:mod:`.records`), SQL-first generation
(:mod:`.strategy`), the SQL machinery (:mod:`.sql`: SQL categories, schemas, synthesized databases, the sandbox,
the query sampler, the question writer and the faithfulness check) and its metric modules (``metrics/``:
execution accuracy, SQL exact match)."""

from tools.tasks.text2sql.plugin import Text2SQLPlugin, check_sql
from tools.tasks.text2sql.records import Text2SQLPrompt, parse_prompt, prompt_of
from tools.tasks.text2sql.sql.categories import (
    CATEGORY_DESCRIPTIONS,
    CATEGORY_PRIORITY,
    UNPARSABLE,
    categorize_sql,
    clean_sql,
    sql_categories,
)

__all__ = ["CATEGORY_DESCRIPTIONS", "CATEGORY_PRIORITY", "UNPARSABLE", "Text2SQLPlugin", "Text2SQLPrompt",
           "categorize_sql", "check_sql", "clean_sql", "parse_prompt", "prompt_of", "sql_categories"]
