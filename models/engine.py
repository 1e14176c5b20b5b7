"""The llama.cpp engine: the only module that imports ``llama_cpp``.

One ``Llama`` per loaded model, touched only by its owner thread (``OwnerThread``). Tokens
are sampled one at a time with ``Llama.generate`` so that we control what the HTTP layer
needs and llama-cpp-python's completion helper hides: exact token counts, cancellation at
the next token, stop strings split across tokens, UTF-8 split across tokens, and
``<|im_end|>``/eog as end of turn. ``Llama.generate`` keeps the longest common prefix of the
previous prompt in the KV cache, so an agent turn that only appends re-uses its prefix.
With a grammar, ``models.engine_grammar.constrained_tokens`` replaces ``Llama.generate``
(same prefix reuse, same sampler chain) and checks the grammar lazily: one token per step
instead of the whole vocabulary, which is what made the action grammar cost ~40% of decode.
"""

from __future__ import annotations

import codecs
import logging
import os
import time
from dataclasses import replace
from pathlib import Path

import llama_cpp

from models.chat_format import CHATML_STOP, looks_like_chatml
from models.engine_api import (
    ContextOverflowError,
    EngineClosedError,
    EngineError,
    EngineInfo,
    GenerationRequest,
    GenerationResult,
)
from models.engine_grammar import GrammarCache, constrained_tokens
from models.engine_runner import OwnerThread, QueuedGeneration
from models.engine_state_cache import ConversationStateCache, common_prefix
from models.stop_strings import StopMatcher

log = logging.getLogger(__name__)

DEFAULT_CTX_CAP = 8192


def gpu_backend() -> str | None:
    """Which GPU backend this llama.cpp build carries, from its shipped libraries."""
    if not llama_cpp.llama_supports_gpu_offload():
        return None
    lib_dir = Path(llama_cpp.__file__).parent / "lib"
    names = " ".join(p.name.lower() for p in lib_dir.glob("*")) if lib_dir.exists() else ""
    for backend in ("cuda", "metal", "vulkan", "hip", "sycl"):
        if backend in names:
            return backend
    return "metal" if os.uname().sysname == "Darwin" else "gpu"


def physical_cores() -> int:
    try:
        import psutil

        return psutil.cpu_count(logical=False) or os.cpu_count() or 1
    except ImportError:  # pragma: no cover - psutil is a dependency
        return os.cpu_count() or 1


class LlamaEngine:
    """A GGUF model served through llama.cpp behind a bounded queue."""

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
    ) -> None:
        backend = gpu_backend()
        if n_gpu_layers is None:
            n_gpu_layers = -1 if backend else 0
        self._llama = self._load(model_path, n_gpu_layers, ctx_size, threads, batch_size)
        metadata = self._llama.metadata
        arch = metadata.get("general.architecture", "llama")
        total_layers = int(metadata.get(f"{arch}.block_count", 0))
        template = metadata.get("tokenizer.chat_template")
        if not looks_like_chatml(template):
            log.warning(
                "%s: the GGUF chat template is not ChatML; prompts are rendered as ChatML anyway",
                model_path,
            )
        offloaded = 0
        if backend and n_gpu_layers != 0:
            offloaded = total_layers if n_gpu_layers < 0 else min(n_gpu_layers, total_layers)
        self.info = EngineInfo(
            model_id=model_id,
            model_path=str(model_path),
            backend=backend if offloaded else "cpu",
            offloaded_layers=offloaded,
            total_layers=total_layers,
            context_length=self._llama.n_ctx(),
            stop=CHATML_STOP,
            aliases=aliases,
        )
        self._im_end = self._special_token("<|im_end|>")
        self._grammars = GrammarCache(self._llama._model.vocab)  # noqa: SLF001
        self._states = (
            ConversationStateCache(state_cache_mb * 1024 * 1024) if state_cache_mb > 0 else None
        )
        self._closed = False
        self._owner = OwnerThread(f"engine-{model_id}", max_queue, self._execute)

    @staticmethod
    def _load(
        model_path: str | Path,
        n_gpu_layers: int,
        ctx_size: int | None,
        threads: int | None,
        batch_size: int,
    ) -> llama_cpp.Llama:
        n_ctx = ctx_size or 0
        try:
            llama = llama_cpp.Llama(
                model_path=str(model_path),
                n_gpu_layers=n_gpu_layers,
                n_ctx=n_ctx,
                n_batch=batch_size,
                n_threads=threads or physical_cores(),
                verbose=False,
            )
        except (ValueError, RuntimeError, OSError) as exc:
            raise EngineError(f"llama.cpp could not load {model_path}: {exc}") from exc
        if ctx_size is None and llama.n_ctx() > DEFAULT_CTX_CAP:
            # The 7B advertises 32k; its KV cache at 32k costs ~4 GB, so cap unless asked.
            llama.close()
            return LlamaEngine._load(model_path, n_gpu_layers, DEFAULT_CTX_CAP, threads, batch_size)
        return llama

    def _special_token(self, text: str) -> int | None:
        tokens = self._llama.tokenize(text.encode(), add_bos=False, special=True)
        return tokens[0] if len(tokens) == 1 else None

    # -- Engine interface ------------------------------------------------------------------
    def tokenize_prompt(self, prompt: str) -> list[int]:
        if self._closed:  # the model is freed: touching it would crash the process
            raise EngineClosedError("the engine is closed")
        return self._llama.tokenize(prompt.encode("utf-8"), add_bos=True, special=True)

    def count_tokens(self, text: str) -> int:
        return len(self.tokenize_prompt(text))

    def queue_depth(self) -> int:
        return self._owner.depth()

    def submit(self, request: GenerationRequest) -> QueuedGeneration:
        tokens = self.tokenize_prompt(request.prompt)
        n_ctx = self.info.context_length
        room = n_ctx - len(tokens)
        if request.max_tokens is None:
            if room <= 0:
                raise ContextOverflowError(len(tokens), 1, n_ctx)
            request = replace(request, max_tokens=room)
        elif request.max_tokens > room:
            raise ContextOverflowError(len(tokens), request.max_tokens, n_ctx)
        job = QueuedGeneration(request, tokens)
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
        self._grammars.close()
        self._llama.close()

    # -- owner thread ------------------------------------------------------------------------
    def _execute(self, job: QueuedGeneration) -> None:
        request = job.request
        llama = self._llama
        started = time.perf_counter()
        if self._states is not None:
            cached = self._states.prepare(llama, job.prompt_tokens)
        else:
            cached = common_prefix(llama._input_ids.tolist(), job.prompt_tokens)  # noqa: SLF001
        if request.seed is not None:
            llama.set_seed(request.seed)
        matcher = StopMatcher(request.stop)
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        produced, first_token_at = 0, 0.0
        finish, stop_string = "length", None
        assert request.max_tokens is not None
        if request.grammar:
            tokens = constrained_tokens(
                llama,
                job.prompt_tokens,
                self._grammars.fresh(request.grammar),
                temperature=request.temperature,
                top_p=request.top_p,
            )
        else:
            tokens = llama.generate(
                job.prompt_tokens,
                temp=request.temperature,
                top_p=request.top_p,
                top_k=0 if request.temperature > 0 else 1,
                min_p=0.0,
                repeat_penalty=1.0,
            )
        try:
            for token in tokens:
                if not first_token_at:
                    first_token_at = time.perf_counter()
                if job.cancelled:
                    finish = "cancelled"
                    break
                if token == self._im_end or llama_cpp.llama_vocab_is_eog(
                    llama._model.vocab,  # noqa: SLF001
                    token,
                ):
                    finish = "stop"
                    break
                produced += 1
                scan = matcher.feed(decoder.decode(llama.detokenize([token])))
                job.emit(scan.emit)
                if scan.stopped:
                    finish, stop_string = "stop", scan.stop_string
                    break
                if produced >= request.max_tokens:
                    break
        except (RuntimeError, ValueError) as exc:
            raise EngineError(f"llama.cpp failed while decoding: {exc}") from exc
        finally:
            tokens.close()
        if stop_string is None:
            job.emit(matcher.feed(decoder.decode(b"", final=True)).emit + matcher.flush())
        now = time.perf_counter()
        job.finish(
            GenerationResult(
                text=matcher.text,
                finish_reason=finish,  # type: ignore[arg-type]
                prompt_tokens=len(job.prompt_tokens),
                completion_tokens=produced,
                stop_string=stop_string,
                cached_prompt_tokens=cached,
                queued_s=started - job.submitted_at,
                time_to_first_token_s=(first_token_at or now) - started,
                total_s=now - started,
            )
        )

