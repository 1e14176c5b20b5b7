"""Imported first by ``tests/conftest.py``: the test process runs the engine too, so libllama
loads before any test module imports numpy (``models.engine.llama.library.load_first`` says why)."""

from models.engine.llama.library import load_first

load_first()
