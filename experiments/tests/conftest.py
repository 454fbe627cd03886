"""The project's session fixtures (the real SmolLM2 tokenizer, a tiny random model) for the experiments' tests."""

from tests.conftest import smol_tokenizer, tiny_model_dir

__all__ = ["smol_tokenizer", "tiny_model_dir"]
