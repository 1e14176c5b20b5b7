"""Air-gapped bundles: one tar file that carries a model (and optionally the wheels) across.

``export_bundle`` writes, in this order::

    manifest.json                 what follows, with the sha256 and size of every member
    SHA256SUMS                    the same hashes in `sha256sum -c` form, for the wheels'
                                  install on the far side, before this code exists there
    model/<filename>.gguf         the GGUF, taken from the local store
    wheels/<file>                 optional: what `pip install --no-index` needs (bundle_wheels)

Why a plain, uncompressed tar: GGUF tensors do not compress, the stdlib reads it, and
``tar -xf`` on any machine gets the wheels out. The manifest comes first so ``import``
knows every expected member, size and hash before it reads a byte of the model.

``import_bundle`` never extracts with tarfile's own ``extract``: each member is copied
(while hashed) into a staging directory *inside the hub cache* (same filesystem), only
members named in the manifest are accepted, and only when every member matched and the
GGUF header checked out is the blob moved into place with one ``os.replace`` and linked
into ``snapshots/``. A truncated, tampered or incomplete archive raises ``BundleError``
with one line and leaves the store as it was: the staging directory is always removed.

The cache layout written is the one ``pull`` produces (blob named by its sha256, snapshot
link, ``refs/<revision>``), so ``resolve_model`` and ``serve --model NAME`` find the file,
and a later ``pull`` of the same model sees it as already present.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import io
import json
import os
import re
import shutil
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from huggingface_hub.file_download import _cache_commit_hash_for_specific_revision, _create_symlink
from huggingface_hub.utils import tqdm as hf_tqdm

from models.errors import ChecksumError, ModelError, ModelFileError
from models.store.cache import RepoCache, check_free_space, is_sha256
from models.store.catalog import CatalogEntry, QuantFile, get_entry
from models.store.gguf_file import file_sha256, validate_gguf
from models.store.local import StoreConfig, expected_sha256, find_local_file, installed_package_file, resolve_model

__all__ = [
    "BundleError",
    "BundleFile",
    "ImportResult",
    "MANIFEST_NAME",
    "export_bundle",
    "import_bundle",
    "read_manifest",
]

FORMAT = "codeact-server-bundle"
FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
SUMS_NAME = "SHA256SUMS"
STAGING_PREFIX = ".codeact-import-"
_CHUNK = 1 << 20
_MAX_MANIFEST = 1 << 20
# Member paths the manifest may name: one directory level, a plain file name.
_MEMBER_RE = re.compile(r"(model|wheels)/[A-Za-z0-9][A-Za-z0-9._+-]*")


class BundleError(ModelError):
    """A bundle cannot be written or read: corrupt, truncated, tampered, or not a bundle.

    A ``ModelError`` so the CLI's existing boundary turns it into one line and exit code.
    """


@dataclass(frozen=True)
class BundleFile:
    """One archive member as the manifest records it."""

    path: str
    size: int
    sha256: str
    kind: str  # "model", "wheel" or "sums"


@dataclass(frozen=True)
class ImportResult:
    """What ``import_bundle`` did: the installed (or already present) path and a sentence."""

    name: str
    quant: str
    path: Path
    message: str
    wheels: int


# --------------------------------------------------------------------------- export


def export_bundle(
    name: str,
    out: Path,
    *,
    quant: str | None = None,
    config: StoreConfig | None = None,
    wheels_dir: Path | None = None,
    wheels_info: dict[str, Any] | None = None,
    progress: bool = True,
    now: Callable[[], float] = time.time,
) -> Path:
    """Write a bundle of catalog model ``name`` (``quant`` or its default) to ``out``.

    The model comes from the local store only (pull it first); its sha256 is checked
    against the catalog (or the hub's hash recorded in the cache) before anything is
    written. ``wheels_dir``: files to carry under ``wheels/`` (see ``bundle_wheels``).
    The archive is written to ``out.partial`` and renamed at the end, so a failed export
    never leaves a plausible-looking bundle behind.
    """
    config = config or StoreConfig.from_env()
    entry = get_entry(name, dict(config.catalog))
    qname, qf = entry.quant_file(quant)
    resolved = resolve_model(entry.name, qname, config=config)
    path = resolved.path
    sha = _verified_sha256(entry, qname, qf, path, config)
    size = path.stat().st_size

    members: list[tuple[BundleFile, Path]] = [(BundleFile(f"model/{qf.filename}", size, sha, "model"), path)]
    for wheel in sorted(wheels_dir.iterdir()) if wheels_dir is not None else []:
        if wheel.is_file():
            record = BundleFile(f"wheels/{wheel.name}", wheel.stat().st_size, file_sha256(wheel), "wheel")
            members.append((record, wheel))
    for member, _ in members:
        if not _MEMBER_RE.fullmatch(member.path):
            raise BundleError(f"cannot bundle {member.path!r}: file names must be plain (letters, digits, ._+-)")

    sums = "".join(f"{m.sha256}  {m.path}\n" for m, _ in members).encode()
    sums_file = BundleFile(SUMS_NAME, len(sums), hashlib.sha256(sums).hexdigest(), "sums")
    files = [sums_file, *(m for m, _ in members)]
    commit = _snapshot_commit(qf, path, config)
    manifest = _manifest(entry, qname, qf, commit, sha, size, files, wheels_info, now())
    manifest_bytes = json.dumps(manifest, indent=2, sort_keys=True).encode()

    out = Path(out)
    partial = out.with_name(out.name + ".partial")
    mtime = int(now())
    try:
        with tarfile.open(partial, "w", format=tarfile.PAX_FORMAT) as tar:
            _add_bytes(tar, MANIFEST_NAME, manifest_bytes, mtime)
            _add_bytes(tar, SUMS_NAME, sums, mtime)
            for member, source in members:
                info = tarfile.TarInfo(member.path)
                info.size, info.mtime, info.mode = member.size, mtime, 0o644
                with source.open("rb") as f, _progress(member.size, member.path, progress) as bar:
                    tar.addfile(info, _CountingReader(f, bar.update))
        os.replace(partial, out)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise BundleError(f"cannot write bundle {out}: {exc.strerror or exc}") from exc
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return out


def _verified_sha256(entry: CatalogEntry, qname: str, qf: QuantFile, path: Path, config: StoreConfig) -> str:
    """The file's sha256, computed (or remembered for this exact file state) and checked."""
    sha = config.hash_cache.get(path) or file_sha256(path)
    config.hash_cache.put(path, sha)
    want = expected_sha256(qf, path)
    if want is not None and sha != want:
        raise ChecksumError(
            f"cannot bundle {entry.name} ({qname}): {path} fails its checksum (sha256 {sha[:12]}..., "
            f"expected {want[:12]}...); pull it again first"
        )
    return sha


def _snapshot_commit(qf: QuantFile, path: Path, config: StoreConfig) -> str | None:
    """The commit folder a hub-cache file sits in (``snapshots/<commit>/<filename>``)."""
    if qf.repo_id is None:
        return None
    snapshots = RepoCache(config.cache_dir, qf.repo_id).snapshots
    try:
        return path.relative_to(snapshots).parts[0]
    except (ValueError, IndexError):
        return qf.revision if re.fullmatch(r"[0-9a-f]{40}", qf.revision) else None


def _manifest(
    entry: CatalogEntry,
    qname: str,
    qf: QuantFile,
    commit: str | None,
    sha: str,
    size: int,
    files: list[BundleFile],
    wheels_info: dict[str, Any] | None,
    created: float,
) -> dict[str, Any]:
    entry_fields = {k: v for k, v in dataclasses.asdict(entry).items() if k != "quants"}
    entry_fields["stop"] = list(entry.stop)
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "created": datetime.fromtimestamp(created, UTC).isoformat(timespec="seconds"),
        "project": {"name": "codeact-server", "version": _project_version()},
        "model": {
            "entry": entry_fields,
            "quant": qname,
            "quant_file": dataclasses.asdict(qf),
            "filename": qf.filename,
            "commit": commit,
            "sha256": sha,
            "size": size,
        },
        "files": [dataclasses.asdict(f) for f in files],
        "wheels": wheels_info,
    }


def _project_version() -> str:
    try:
        return importlib.metadata.version("codeact-server")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes, mtime: int) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), mtime, 0o644
    tar.addfile(info, io.BytesIO(data))


class _CountingReader:
    """A file wrapper that reports bytes read, so tarfile's copy drives a progress bar."""

    def __init__(self, f: IO[bytes], on_read: Callable[[int], object]) -> None:
        self._f = f
        self._on_read = on_read

    def read(self, n: int = -1) -> bytes:
        data = self._f.read(n)
        self._on_read(len(data))
        return data


@contextmanager
def _progress(total: int, desc: str, enabled: bool) -> Iterator[hf_tqdm]:
    """A byte progress bar, shown only for files worth watching (over 64 MiB)."""
    with hf_tqdm(
        total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=desc, disable=not enabled or total < 64 << 20
    ) as bar:
        yield bar


# --------------------------------------------------------------------------- import


def read_manifest(path: Path) -> dict[str, Any]:
    """The parsed, validated manifest of the bundle at ``path`` (reads only its head)."""
    with _bundle_errors(Path(path)), tarfile.open(path, "r:") as tar:
        manifest, _ = _read_manifest(tar, Path(path))
    return manifest


def import_bundle(
    path: Path,
    *,
    config: StoreConfig | None = None,
    wheels_out: Path | None = None,
    progress: bool = True,
) -> ImportResult:
    """Verify every member of the bundle at ``path`` and install its model into the store.

    Nothing touches the network. Raises ``BundleError`` (one line) for an archive that is
    missing, truncated, tampered with, incomplete or not a bundle; the store is then
    exactly as before. ``wheels_out``: also copy the verified wheels there.
    """
    config = config or StoreConfig.from_env()
    path = Path(path)
    with _bundle_errors(path), tarfile.open(path, "r:") as tar:
        manifest, files = _read_manifest(tar, path)
        entry_name, qname, qf, commit, sha = _target(manifest, config, path)
        config.cache_dir.mkdir(parents=True, exist_ok=True)
        need = sum(f.size for f in files.values())
        check_free_space(config.cache_dir, need, lambda why: BundleError(f"cannot import bundle {path}: {why}"))
        staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=config.cache_dir))
        try:
            staged = _stage_members(tar, files, staging, path, progress)
            model_file = next(f for f in files.values() if f.kind == "model")
            try:
                validate_gguf(staged[model_file.path], expected_size=model_file.size, fix="export the bundle again")
            except ModelFileError as exc:
                raise BundleError(f"bundle {path} carries a bad model file ({model_file.path}): {exc}") from exc
            wheels = [staged[f.path] for f in files.values() if f.kind == "wheel"]
            if wheels_out is not None:
                _copy_wheels(wheels, wheels_out)
            if qf.package is not None:
                pointer, message = _check_packaged(entry_name, qname, qf, sha, config)
            else:
                pointer = _install_blob(staged[model_file.path], qf, commit, sha, config)
                hint = _serve_hint(entry_name, qname, config)
                message = f"imported {entry_name} ({qname}) into {pointer}; {hint}"
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return ImportResult(entry_name, qname, pointer, message, len(wheels))


@contextmanager
def _bundle_errors(path: Path) -> Iterator[None]:
    """Translate tarfile / OS exceptions into one-line BundleErrors, by type."""
    try:
        yield
    except FileNotFoundError as exc:
        raise BundleError(f"bundle {path} does not exist") from exc
    except IsADirectoryError as exc:
        raise BundleError(f"bundle {path} is a directory, not a bundle file") from exc
    except (tarfile.ReadError, EOFError) as exc:
        raise BundleError(
            f"bundle {path} is truncated or not a tar archive ({exc}); copy it again or export a new one"
        ) from exc
    except tarfile.TarError as exc:
        raise BundleError(f"bundle {path} is a corrupt archive ({exc}); copy it again or export a new one") from exc
    except OSError as exc:
        raise BundleError(f"cannot import bundle {path}: {exc.strerror or exc} ({exc.filename or path})") from exc


def _read_manifest(tar: tarfile.TarFile, path: Path) -> tuple[dict[str, Any], dict[str, BundleFile]]:
    first = tar.next()
    if first is None or first.name != MANIFEST_NAME or not first.isreg() or first.size > _MAX_MANIFEST:
        raise BundleError(f"{path} is not a codeact-server bundle (it does not start with {MANIFEST_NAME})")
    stream = tar.extractfile(first)
    assert stream is not None  # a regular member always has a stream
    try:
        manifest = json.loads(stream.read())
    except ValueError as exc:
        raise BundleError(f"bundle {path} has a corrupt {MANIFEST_NAME} ({exc})") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BundleError(f"{path} is not a codeact-server bundle (its {MANIFEST_NAME} says otherwise)")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise BundleError(
            f"bundle {path} has format version {version!r}, this codeact-server reads {FORMAT_VERSION}; "
            "use the codeact-server version that exported it"
        )
    try:
        files = _manifest_files(manifest)
    except (KeyError, TypeError, ValueError) as exc:
        raise BundleError(f"bundle {path} has a malformed {MANIFEST_NAME} ({exc})") from exc
    return manifest, files


def _manifest_files(manifest: dict[str, Any]) -> dict[str, BundleFile]:
    files: dict[str, BundleFile] = {}
    for raw in manifest["files"]:
        f = BundleFile(str(raw["path"]), int(raw["size"]), str(raw["sha256"]), str(raw["kind"]))
        if not (_MEMBER_RE.fullmatch(f.path) or f.path == SUMS_NAME) or f.path in files:
            raise ValueError(f"bad or repeated member path {f.path!r}")
        if f.size < 0 or not is_sha256(f.sha256) or f.kind not in ("model", "wheel", "sums"):
            raise ValueError(f"bad size, sha256 or kind for {f.path!r}")
        files[f.path] = f
    models = [f for f in files.values() if f.kind == "model"]
    model = manifest["model"]
    if len(models) != 1 or models[0].path != f"model/{model['filename']}" or models[0].sha256 != model["sha256"]:
        raise ValueError("the model entry does not match the file list")
    return files


def _target(manifest: dict[str, Any], config: StoreConfig, path: Path) -> tuple[str, str, QuantFile, str | None, str]:
    """Where the bundle's model goes: its catalog file, cross-checked with our catalog.

    The manifest's own catalog record decides the location (repo, file name, revision),
    so a bundle of a model this server's catalog does not know still installs (and is
    served with ``--model PATH``); a known model whose catalog record disagrees is refused.
    """
    try:
        model = manifest["model"]
        entry_name, qname = str(model["entry"]["name"]), str(model["quant"])
        qf = QuantFile(**model["quant_file"])
        commit, sha = model.get("commit"), str(model["sha256"])
    except (KeyError, TypeError) as exc:
        raise BundleError(f"bundle {path} has a malformed {MANIFEST_NAME} ({exc})") from exc
    if commit is not None and not re.fullmatch(r"[0-9A-Za-z._-]{1,100}", str(commit)):
        raise BundleError(f"bundle {path} has a malformed {MANIFEST_NAME} (bad commit {commit!r})")
    local = _local_quant(entry_name, qname, config)
    if local is not None:
        if (local.repo_id, local.filename, local.package) != (qf.repo_id, qf.filename, qf.package):
            raise BundleError(
                f"bundle {path} holds {entry_name} ({qname}) as {qf.repo_id or qf.package}/{qf.filename}, but this "
                f"server's catalog expects {local.repo_id or local.package}/{local.filename}; use matching versions"
            )
        if local.sha256 is not None and local.sha256.lower() != sha:
            raise BundleError(
                f"bundle {path} holds {entry_name} ({qname}) with sha256 {sha[:12]}..., this server's catalog "
                f"expects {local.sha256[:12]}...; refusing it"
            )
        qf = local
    return entry_name, qname, qf, None if commit is None else str(commit), sha


def _local_quant(name: str, quant: str, config: StoreConfig) -> QuantFile | None:
    try:
        return get_entry(name, dict(config.catalog)).quant_file(quant)[1]
    except ModelError:
        return None


def _stage_members(
    tar: tarfile.TarFile, files: dict[str, BundleFile], staging: Path, path: Path, progress: bool
) -> dict[str, Path]:
    """Copy every member into ``staging`` while hashing it; all must match the manifest."""
    staged: dict[str, Path] = {}
    while (member := tar.next()) is not None:
        spec = files.get(member.name)
        if spec is None or member.name in staged:
            raise BundleError(f"bundle {path} has an unexpected member {member.name!r}; it was modified, refusing it")
        if not member.isreg():
            raise BundleError(f"bundle {path}: member {member.name!r} is not a regular file; refusing it")
        if member.size != spec.size:
            raise BundleError(
                f"bundle {path}: {member.name} has {member.size} bytes, the manifest says {spec.size}; "
                "the bundle was modified, refusing it"
            )
        target = staging / f"{len(staged)}-{Path(member.name).name}"
        source = tar.extractfile(member)
        assert source is not None
        digest = hashlib.sha256()
        with target.open("wb") as out, _progress(spec.size, member.name, progress) as bar:
            while chunk := source.read(_CHUNK):
                digest.update(chunk)
                out.write(chunk)
                bar.update(len(chunk))
        if digest.hexdigest() != spec.sha256:
            raise BundleError(
                f"bundle {path}: {member.name} fails its checksum (sha256 {digest.hexdigest()[:12]}..., manifest "
                f"says {spec.sha256[:12]}...); the bundle is corrupt or was modified, nothing was imported"
            )
        staged[member.name] = target
    missing = [name for name in files if name not in staged]
    if missing:
        raise BundleError(
            f"bundle {path} is incomplete (missing {', '.join(missing)}); it was probably cut short, copy it again"
        )
    return staged


def _copy_wheels(wheels: list[Path], dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for wheel in wheels:
        shutil.copyfile(wheel, dest / wheel.name.split("-", 1)[1])


def _install_blob(staged: Path, qf: QuantFile, commit: str | None, sha: str, config: StoreConfig) -> Path:
    """Move the verified file into the hub cache as ``pull`` would leave it; return the pointer.

    The blob is named by its sha256 and moved with one ``os.replace`` (same filesystem);
    the ``snapshots/<commit>/<file>`` link written afterwards is what makes it visible.
    If ``refs/<revision>`` already names another commit (another quant pulled later),
    the ref is kept and the file is linked under both commits, so nothing pulled before
    disappears. Holds the same lock as ``pull`` for this blob.
    """
    assert qf.repo_id is not None
    repo = RepoCache(config.cache_dir, qf.repo_id)
    blob = repo.blob(sha)
    ref = repo.ref(qf.revision)
    with repo.blob_lock(sha):
        existed = blob.exists()
        blob.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(staged, blob)
            config.hash_cache.put(blob, sha)
            current = ref.read_text().strip() if ref.is_file() else None
            commit = commit or current or sha[:40]
            for c in dict.fromkeys(c for c in (commit, current) if c):
                link = repo.snapshots / c / qf.filename
                link.parent.mkdir(parents=True, exist_ok=True)
                _create_symlink(str(blob), str(link), new_blob=False)
            if current is None:
                _cache_commit_hash_for_specific_revision(str(repo.root), qf.revision, commit)
        except BaseException:
            if not existed:
                blob.unlink(missing_ok=True)
            raise
    pointer = find_local_file(qf, config)
    if pointer is None:  # our own bug: the layout written is not the one the store reads
        raise RuntimeError(f"imported {qf.filename} into {repo.root} but the store cannot find it")
    return pointer


def _check_packaged(name: str, qname: str, qf: QuantFile, sha: str, config: StoreConfig) -> tuple[Path, str]:
    """A model that ships inside a Python package is installed by pip, not into the cache:
    the installed file must be the bundle's."""
    local = installed_package_file(
        qf,
        sha,
        config,
        missing=lambda dist: BundleError(
            f"{name} ({qname}) ships in the {dist} package, which is not installed; install it from the bundle's "
            f"wheels (`pip install --no-index --find-links DIR {dist}`), then import again"
        ),
    )
    return local, f"{name} ({qname}) is already installed (it ships in the {qf.distribution} package at {local})"


def _serve_hint(name: str, qname: str, config: StoreConfig) -> str:
    if _local_quant(name, qname, config) is None:
        return f"this server's catalog does not know {name}: serve it with `codeact-server serve --model PATH`"
    entry = get_entry(name, dict(config.catalog))
    quant_arg = "" if qname == entry.default_quant else f" --quant {qname}"
    return f"serve it with `codeact-server serve --model {entry.name}{quant_arg}`"
