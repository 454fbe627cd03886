"""The chat / character task type: persona and reply-length categories, persona-anchored dialogue generation,
dialogue checks, token F1 and BLEU."""

from tools.tasks.chat.categories import LENGTH_BUCKETS, length_bucket, persona_id
from tools.tasks.chat.plugin import ChatPlugin, check_dialogue

__all__ = ["LENGTH_BUCKETS", "ChatPlugin", "check_dialogue", "length_bucket", "persona_id"]
