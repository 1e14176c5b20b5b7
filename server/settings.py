"""The one settings class: env vars (``CODEACT_`` prefix), CLI flags and their docs.

Every field's description is the ``--help`` text of its flag, so the three cannot drift.
``serve_flags`` lists which fields ``codeact-server serve`` exposes as flags.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Server configuration; ``CODEACT_<FIELD>`` env vars and ``serve --<field>`` flags."""

    model_config = SettingsConfigDict(env_prefix="CODEACT_", extra="ignore")

    # -- model ---------------------------------------------------------------------------
    model: str = Field(
        "auto",
        description="model to serve: a catalog name (see `codeact-server models`), a path to a "
        ".gguf file, or `auto` (the CodeActAgent 7B when pulled, else the embedded SmolLM2-135M)",
    )
    quant: str | None = Field(
        None, description="quantization of a catalog model, e.g. Q4_K_M (default: the catalog's)"
    )
    n_gpu_layers: int | None = Field(
        None,
        description="layers to offload to the GPU; -1 = all (default: all when the llama.cpp "
        "build has a GPU backend, else 0)",
    )
    ctx_size: int | None = Field(
        None,
        ge=256,
        description="context window in tokens (default: the model's, capped at 8192 to bound "
        "KV-cache memory)",
    )
    threads: int | None = Field(
        None, ge=1, description="CPU threads for generation (default: physical cores)"
    )
    batch_size: int = Field(512, ge=1, description="prompt-processing batch size in tokens")

    # -- HTTP ----------------------------------------------------------------------------
    host: str = Field("127.0.0.1", description="address to bind")
    port: int = Field(8000, ge=0, le=65535, description="TCP port to bind (0 = any free port)")
    max_queue: int = Field(
        8,
        ge=1,
        description="generation requests allowed to wait behind the running one; more get "
        "503 with Retry-After",
    )
    log_level: str = Field("info", description="log level: debug, info, warning, error")

    # -- agent ---------------------------------------------------------------------------
    max_turns: int = Field(5, ge=1, le=50, description="default agent turns per request")
    execution_timeout: float = Field(
        60.0, gt=0, le=600, description="default wall-clock seconds per code execution"
    )
    max_sessions: int = Field(
        32, ge=1, description="live agent sessions (each holds a sandbox worker); more get 429"
    )
    session_ttl: float = Field(
        1800.0, gt=0, description="seconds an idle agent session is kept before it is closed"
    )
    sandbox_memory_mb: int = Field(
        1024, ge=64, description="address-space limit of each sandbox worker in MiB"
    )
    sandbox_pool_size: int = Field(
        2, ge=0, description="sandbox workers started ahead of time so new sessions start fast"
    )
    sandbox_network: bool = Field(
        False, description="allow network access from agent code (off: isolated when possible)"
    )


SERVE_FLAGS: tuple[str, ...] = tuple(Settings.model_fields)
