"""Fixtures for the model-files tests: a small real GGUF, a fake hub, a temp store.

Every test gets its own hub cache and state directory through an explicit
``StoreConfig`` (never by mutating HF_* env vars, which huggingface_hub reads only at
import time), so tests are independent and never touch the user's ~/.cache.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from gguf import GGUFWriter

from models.store.catalog import CatalogEntry, QuantFile
from models.store.local import StoreConfig


def _load_fake_hub():  # noqa: ANN202 - returns a module
    # Loaded by path so it works whatever pytest import mode the project picks
    # (tests/ is not a package, and a tests/models package would shadow `models`).
    name = "codeact_tests_fake_hub"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("fake_hub.py"))
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


fake_hub_module = _load_fake_hub()
FakeHub = fake_hub_module.FakeHub

REPO = "test-org/tiny-GGUF"
CHAT_TEMPLATE = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"


def write_tiny_gguf(path: Path, *, name: str = "tiny", n_floats: int = 64 * 1024) -> Path:
    """A small but real GGUF (llama arch keys, chat template, two f32 tensors)."""
    w = GGUFWriter(path, "llama")
    w.add_name(name)
    w.add_context_length(2048)
    w.add_block_count(2)
    w.add_chat_template(CHAT_TEMPLATE)
    w.add_array("tokenizer.ggml.tokens", [f"t{i}" for i in range(200)])
    w.add_tensor("a", np.arange(n_floats, dtype=np.float32))
    w.add_tensor("b", np.ones((16, 16), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


@pytest.fixture(scope="session")
def tiny_gguf_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return write_tiny_gguf(tmp_path_factory.mktemp("gguf") / "tiny.gguf").read_bytes()


@pytest.fixture(scope="session")
def other_gguf_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return write_tiny_gguf(tmp_path_factory.mktemp("gguf") / "big.gguf", name="big", n_floats=1024).read_bytes()


@pytest.fixture
def tiny_gguf(tmp_path: Path, tiny_gguf_bytes: bytes) -> Path:
    path = tmp_path / "tiny.gguf"
    path.write_bytes(tiny_gguf_bytes)
    return path


def make_catalog(tiny: bytes, big: bytes) -> dict[str, CatalogEntry]:
    """Two fake models: 'big' (ranked first by auto, like the 7B) and 'tiny'."""
    tiny_exact = QuantFile(REPO, "tiny.Q8_0.gguf", len(tiny), hashlib.sha256(tiny).hexdigest())
    tiny_unknown = QuantFile(REPO, "tiny.F16.gguf", 12345, None)  # hash unknown: trust the hub's
    big_file = QuantFile("test-org/big-GGUF", "big.Q4_K_M.gguf", len(big), None)
    return {
        "big": CatalogEntry("big", "stand-in for the 7B", 4096, "Q4_K_M", {"Q4_K_M": big_file}, auto_rank=100),
        "tiny": CatalogEntry("tiny", "tiny test model", 2048, "Q8_0", {"Q8_0": tiny_exact, "F16": tiny_unknown}),
    }


@pytest.fixture
def fake_hub_cls() -> type:
    """The FakeHub class, for tests that need a differently configured hub."""
    return FakeHub


@pytest.fixture
def hub(tiny_gguf_bytes: bytes, other_gguf_bytes: bytes) -> Iterator[FakeHub]:
    with FakeHub() as h:
        h.add(REPO, "tiny.Q8_0.gguf", tiny_gguf_bytes)
        h.add(REPO, "tiny.F16.gguf", tiny_gguf_bytes)
        h.add("test-org/big-GGUF", "big.Q4_K_M.gguf", other_gguf_bytes)
        yield h


@pytest.fixture
def config(tmp_path: Path, hub: FakeHub, tiny_gguf_bytes: bytes, other_gguf_bytes: bytes) -> StoreConfig:
    return StoreConfig(
        cache_dir=tmp_path / "hf" / "hub",
        state_dir=tmp_path / "hf" / "codeact-server",
        endpoint=hub.endpoint,
        catalog=make_catalog(tiny_gguf_bytes, other_gguf_bytes),
    )
