"""The llama.cpp engine; this folder (``models.engine.llama``) holds all that decodes with ``llama_cpp``.

One llama.cpp context per loaded model, touched only by its owner thread
(``models.engine.runner.OwnerThread``, the queue every engine shares), whose worker
``models.engine.llama.batch.BatchScheduler`` decodes up to ``parallel`` requests together
in one batch, each in its own KV sequence. Tokens are sampled one at a time per request so
that we control what the HTTP layer needs and llama-cpp-python's completion helper hides:
exact token counts, cancellation at the next token, stop strings split across tokens, UTF-8
split across tokens, and ``<|im_end|>``/eog as end of turn. A request lands in the slot
whose KV cells share the longest prefix with its prompt, so an agent turn that only appends
re-uses its previous turn, even while other conversations run beside it. Grammars are
checked lazily (``models.engine.llama.grammar``); prompt-lookup speculative decoding is optional
(``models.engine.llama.lookup``).

We build the model and context from llama-cpp-python's thin wrappers rather than ``Llama``:
``Llama`` fixes ``n_seq_max`` at 1 and allocates a second KV cache we would not use.
"""

from __future__ import annotations

import ctypes
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import llama_cpp
from llama_cpp import _internals as llama_internals

from models.engine.admission import fit_context
from models.engine.api import (
    EngineClosedError,
    EngineError,
    EngineInfo,
    GenerationRequest,
    InvalidTokenError,
)
from models.engine.chat_format import CHATML_STOP, looks_like_chatml
from models.engine.llama.batch import BatchScheduler
from models.engine.llama.devices import backend_name, carried_backend, gpu_devices
from models.engine.llama.grammar import GrammarCache
from models.engine.llama.library import load_first, loaded_library
from models.engine.llama.lookup import PromptLookup
from models.engine.llama.sampler import TokenSampler
from models.engine.llama.slots import ActiveGeneration
from models.engine.llama.state_cache import ConversationStateCache
from models.engine.runner import OwnerThread, QueuedGeneration

log = logging.getLogger(__name__)

DEFAULT_CTX_CAP = 8192
DEFAULT_GPU_PARALLEL = 4
#: Streamed text is handed to the event loop at most this often (``QueuedGeneration``'s wake
#: interval); the first text and the end go at once. See benchmarks/RESULTS.md, token_overhead.
DEFAULT_STREAM_INTERVAL_MS = 50.0

FlashAttn = Literal["auto", "on", "off"]
#: ``auto`` is llama.cpp's own default and llama-server's: on wherever the backend has the
#: kernel, CPUs included (1.04-1.10x the decode speed here, benchmarks/RESULTS.md,
#: decode_loop). ``off`` is what llama-cpp-python's ``Llama`` uses: with it our greedy text
#: matches ``Llama``'s token for token; the two kernels round differently, so near-ties can
#: differ between ``auto`` and ``off``.
FLASH_ATTN_TYPES = {
    "auto": llama_cpp.LLAMA_FLASH_ATTN_TYPE_AUTO,
    "on": llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED,
    "off": llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED,
}


def gpu_backend() -> str | None:
    """Which GPU backend the loaded llama.cpp build carries, from the folder its libllama came from."""
    if not llama_cpp.llama_supports_gpu_offload():
        return None
    return backend_name(library_folder())


def library_folder() -> Path:
    """The folder of the loaded ``libllama`` (``--llama-lib``'s, else the package's own ``lib``)."""
    loaded = loaded_library()
    return loaded.parent if loaded else Path(llama_cpp.__file__).parent / "lib"


@dataclass(frozen=True)
class LlamaEngineInfo(EngineInfo):
    """``EngineInfo`` plus the devices that hold offloaded layers, as ggml names them (``/health``)."""

    devices: tuple[str, ...] = ()


def physical_cores() -> int:
    try:
        import psutil

        return psutil.cpu_count(logical=False) or os.cpu_count() or 1
    except ImportError:  # pragma: no cover - psutil is a dependency
        return os.cpu_count() or 1


_backend_ready = False


def _init_backend() -> None:
    """Initialise llama.cpp once per process and keep its log chatter out of our stderr."""
    global _backend_ready
    if not _backend_ready:
        logging.getLogger("llama-cpp-python").setLevel(logging.ERROR)
        llama_cpp.llama_backend_init()
        _backend_ready = True


class LlamaEngine:
    """A GGUF model served through llama.cpp behind a bounded queue, ``parallel`` at a time."""

    def __init__(
        self,
        model_path: str | Path,
        *,
        model_id: str,
        n_gpu_layers: int | None = None,
        ctx_size: int | None = None,
        threads: int | None = None,
        batch_size: int = 512,
        max_queue: int = 8,
        aliases: tuple[str, ...] = (),
        state_cache_mb: int = 1024,
        parallel: int | None = None,
        lookup_draft_tokens: int = 0,
        stream_interval_ms: float = DEFAULT_STREAM_INTERVAL_MS,
        flash_attn: FlashAttn = "auto",
    ) -> None:
        _init_backend()
        backend = gpu_backend()
        if backend is None and (carried := carried_backend(library_folder())):
            log.warning(
                "this llama.cpp build has the %s backend but no %s device answered (is the driver installed and "
                "the GPU visible to this process?): serving on the CPU",
                carried,
                carried.upper(),
            )
        if n_gpu_layers is None:
            n_gpu_layers = -1 if backend else 0
        if parallel is None:
            # Batching pays where decode is memory-bound (a GPU); on a compute-bound CPU a step
            # of 4 sequences cost ~4 single steps here (benchmarks/RESULTS.md, concurrency).
            parallel = DEFAULT_GPU_PARALLEL if backend and n_gpu_layers != 0 else 1
        if parallel < 1:
            raise ValueError("parallel must be at least 1")
        self._model = self._load_model(model_path, n_gpu_layers)
        n_ctx = ctx_size or min(self._model.n_ctx_train(), DEFAULT_CTX_CAP)
        # The 7B advertises 32k; its KV cache at 32k costs ~4 GB, so cap unless asked.
        self._context = self._new_context(n_ctx, batch_size, parallel, threads or physical_cores(), flash_attn)
        metadata = self._model.metadata()
        arch = metadata.get("general.architecture", "llama")
        total_layers = int(metadata.get(f"{arch}.block_count", 0))
        if not looks_like_chatml(metadata.get("tokenizer.chat_template")):
            log.warning("%s: the GGUF chat template is not ChatML; prompts are rendered as ChatML anyway", model_path)
        offloaded = 0
        if backend and n_gpu_layers != 0:
            offloaded = total_layers if n_gpu_layers < 0 else min(n_gpu_layers, total_layers)
        self.info = LlamaEngineInfo(
            model_id=model_id,
            model_path=str(model_path),
            backend=backend if backend and offloaded else "cpu",
            offloaded_layers=offloaded,
            total_layers=total_layers,
            context_length=self._context.n_ctx(),
            stop=CHATML_STOP,
            aliases=aliases,
            parallel_sequences=parallel,
            lookup_draft_tokens=lookup_draft_tokens,
            logprobs=True,
            vocab_size=self._model.n_vocab(),
            devices=gpu_devices(library_folder()) if offloaded else (),
        )
        self._vocab = self._model.vocab
        self._n_vocab = self._model.n_vocab()
        self._im_end = self._special_token("<|im_end|>")
        self._piece_buffer = ctypes.create_string_buffer(64)  # owner thread only
        self._grammars = GrammarCache(self._vocab)
        self._closed = False
        self._wake_interval_s = max(stream_interval_ms, 0.0) / 1000
        states = ConversationStateCache(state_cache_mb * 1024 * 1024) if state_cache_mb > 0 else None
        self._scheduler = BatchScheduler(
            self._context.ctx,
            n_ctx=self.info.context_length,
            n_batch=batch_size,
            n_slots=parallel,
            open_generation=self._open_generation,
            states=states,
            max_draft=lookup_draft_tokens,
        )
        self._states = states
        self._owner = OwnerThread(f"engine-{model_id}", max_queue, self._scheduler)

    @staticmethod
    def _load_model(model_path: str | Path, n_gpu_layers: int) -> llama_internals.LlamaModel:
        load_first()  # a no-op when the process did it first; else at least the AMX defaults
        params = llama_cpp.llama_model_default_params()
        params.n_gpu_layers = 0x7FFFFFFF if n_gpu_layers < 0 else n_gpu_layers
        try:
            return llama_internals.LlamaModel(path_model=str(model_path), params=params, verbose=False)
        except (ValueError, RuntimeError, OSError) as exc:
            raise EngineError(f"llama.cpp could not load {model_path}: {exc}") from exc

    def _new_context(
        self, n_ctx: int, batch_size: int, parallel: int, threads: int, flash_attn: FlashAttn
    ) -> llama_internals.LlamaContext:
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = n_ctx
        params.n_batch = params.n_ubatch = batch_size
        params.n_seq_max = parallel
        params.kv_unified = True  # every sequence may use the whole window; cells are shared
        params.n_threads = params.n_threads_batch = threads
        # Flash attention: see FLASH_ATTN_TYPES (``auto``, as llama-server; ``off``, as ``Llama``).
        params.flash_attn_type = FLASH_ATTN_TYPES[flash_attn]
        try:
            return llama_internals.LlamaContext(model=self._model, params=params, verbose=False)
        except (ValueError, RuntimeError) as exc:
            self._model.close()
            raise EngineError(f"llama.cpp could not create a {n_ctx}-token context: {exc}") from exc

    def _special_token(self, text: str) -> int | None:
        tokens = self._model.tokenize(text.encode(), add_bos=False, special=True)
        return tokens[0] if len(tokens) == 1 else None

    def _is_end_of_turn(self, token: int) -> bool:
        return token == self._im_end or llama_cpp.llama_vocab_is_eog(self._vocab, token)

    def _piece(self, token: int) -> bytes:
        buffer = self._piece_buffer
        n = llama_cpp.llama_token_to_piece(self._vocab, token, buffer, len(buffer), 0, False)
        if n < 0:  # a piece longer than the buffer: grow it once and retry
            self._piece_buffer = buffer = ctypes.create_string_buffer(-n)
            n = llama_cpp.llama_token_to_piece(self._vocab, token, buffer, len(buffer), 0, False)
        return buffer.raw[:n]

    # -- Engine interface ------------------------------------------------------------------
    def tokenize_prompt(self, prompt: str) -> list[int]:
        if self._closed:  # the model is freed: touching it would crash the process
            raise EngineClosedError("the engine is closed")
        return self._model.tokenize(prompt.encode("utf-8"), add_bos=True, special=True)

    def count_tokens(self, text: str) -> int:
        return len(self.tokenize_prompt(text))

    # Like count_tokens these run on the caller's thread: they read only the vocabulary,
    # which decoding on the owner thread never changes (and never its shared piece buffer).
    def tokenize(self, text: str, add_special: bool = False) -> list[int]:
        if self._closed:
            raise EngineClosedError("the engine is closed")
        return self._model.tokenize(text.encode("utf-8"), add_bos=add_special, special=True)

    def token_pieces(self, tokens: list[int]) -> list[bytes]:
        if self._closed:
            raise EngineClosedError("the engine is closed")
        for token in tokens:  # llama.cpp aborts the process on an id outside the vocabulary
            if not 0 <= token < self._n_vocab:
                raise InvalidTokenError.outside(token, self._n_vocab)
        buffer = ctypes.create_string_buffer(64)
        pieces = []
        for token in tokens:
            n = llama_cpp.llama_token_to_piece(self._vocab, token, buffer, len(buffer), 0, True)
            if n < 0:
                buffer = ctypes.create_string_buffer(-n)
                n = llama_cpp.llama_token_to_piece(self._vocab, token, buffer, len(buffer), 0, True)
            pieces.append(buffer.raw[:n])
        return pieces

    def detokenize(self, tokens: list[int]) -> str:
        return b"".join(self.token_pieces(tokens)).decode("utf-8", errors="replace")

    def queue_depth(self) -> int:
        return self._owner.depth()

    def submit(self, request: GenerationRequest) -> QueuedGeneration:
        tokens = self.tokenize_prompt(request.prompt)
        request = fit_context(request, len(tokens), self.info.context_length)
        job = QueuedGeneration(request, tokens, wake_interval_s=self._wake_interval_s)
        self._owner.submit(job)
        return job

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._owner.close()
        if self._owner.alive():
            # Freeing the context under a decode still running on the owner thread would
            # crash the process; leave it to process exit instead.
            log.warning("the model is still decoding a prompt; not freeing it before exit")
            return
        self._scheduler.free()
        self._grammars.close()
        self._context.close()
        self._model.close()

    # -- owner thread ------------------------------------------------------------------------
    def _open_generation(self, job: QueuedGeneration, cached_tokens: int) -> ActiveGeneration:
        request = job.request
        grammar = self._grammars.fresh(request.grammar) if request.grammar else None
        sampler = TokenSampler(
            self._context.ctx,
            self._n_vocab,
            temperature=request.temperature,
            top_p=request.top_p,
            seed=request.seed,
            grammar=grammar,
            logprobs=request.logprobs,
        )
        lookup = PromptLookup(job.prompt_tokens) if self.info.lookup_draft_tokens else None
        return ActiveGeneration(
            job,
            sampler,
            cached_tokens=cached_tokens,
            is_end_of_turn=self._is_end_of_turn,
            piece=self._piece,
            lookup=lookup,
        )
