"""Errors raised by the model-files layer (catalog, store, pull, GGUF validation).

Every error here is about something the *user* can fix (a missing download, a corrupt
file, no network), so each one's ``str()`` is a single line that names the file or model
and the command that fixes it. The CLI prints that line and exits non-zero; no traceback.
Library exceptions (huggingface_hub, httpx2, OS errors) are translated at the boundary
with ``raise ... from exc`` so the cause stays available for ``--debug`` output.

    ModelError                      base class; catch this at the CLI / start-up boundary
    ├── ModelNotFoundError          unknown catalog name or quant, or not present locally
    ├── ModelFileError              a file is missing, truncated or not GGUF
    │   └── ChecksumError           a file's sha256 differs from the expected one
    ├── PullError                   a download could not be done (offline, HTTP, disk)
    │   └── OfflineError            HF_HUB_OFFLINE is set, so nothing can be downloaded
    ├── BundleError                 (models.store.bundle) an air-gap archive is corrupt or partial
    └── WheelsError                 (models.store.bundle_wheels) wheels for a bundle failed

``ChecksumError`` is a ``ModelFileError`` because to a caller it is one more way a file
can be bad; ``pull`` raises it too, after deleting the bad download.
"""

from __future__ import annotations

__all__ = [
    "ChecksumError",
    "ModelError",
    "ModelFileError",
    "ModelNotFoundError",
    "OfflineError",
    "PullError",
]


class ModelError(Exception):
    """Base of every error about model files; its message is one actionable line."""


class ModelNotFoundError(ModelError):
    """A model name or quant is unknown, or a known model is not in the local store."""


class ModelFileError(ModelError):
    """A model file exists (or should) but cannot be used: missing, truncated, not GGUF."""


class ChecksumError(ModelFileError):
    """A model file's sha256 differs from the catalog's or the hub's."""


class PullError(ModelError):
    """Downloading a model failed for a reason other than a bad checksum."""


class OfflineError(PullError):
    """A download was needed while HF_HUB_OFFLINE forbids network access."""
