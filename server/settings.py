"""The one settings class: env vars (``CODEACT_`` prefix), CLI flags and their docs.

Every field's description is the ``--help`` text of its flag, so the three cannot drift.
``SERVE_FLAGS`` lists which fields ``codeact-server serve`` exposes as flags, in order.

The agent loop's options (``agent_<name>``) are not written here: each is made from its
field in ``server.agent.options.LoopPolicy`` (type, default, description), which the
``/v1/agent`` request fields and the README's table are made from too.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Field, create_model, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from sandbox.environment import DEFAULT_PREIMPORT, default_env_dir
from server.agent.options import SETTING_PREFIX, LoopPolicy, setting_fields

StrList = Annotated[list[str], NoDecode]
"""A list setting: repeat the flag, or give the env var as a comma-separated string."""

MiB = 1024 * 1024


if TYPE_CHECKING:  # the type checker sees the plain base; read the options with loop_policy()
    _SettingsWithLoopOptions = BaseSettings
else:
    _SettingsWithLoopOptions = create_model("_SettingsWithLoopOptions", __base__=BaseSettings, **setting_fields())


class Settings(_SettingsWithLoopOptions):
    """Server configuration; ``CODEACT_<FIELD>`` env vars and ``serve --<field>`` flags."""

    model_config = SettingsConfigDict(env_prefix="CODEACT_", extra="ignore")

    # -- model ---------------------------------------------------------------------------
    model: str = Field(
        "auto",
        description="model to serve: a catalog name (see `codeact-server models`), a path to a "
        ".gguf file, or `auto` (the CodeActAgent 7B when pulled, else the embedded SmolLM2-135M)",
    )
    quant: str | None = Field(None, description="quantization of a catalog model, e.g. Q4_K_M (default: the catalog's)")
    n_gpu_layers: int | None = Field(
        None,
        description="layers to offload to the GPU; -1 = all (default: all when the llama.cpp "
        "build has a GPU backend, else 0)",
    )
    ctx_size: int | None = Field(
        None,
        ge=256,
        description="context window in tokens (default: the model's, capped at 8192 to bound KV-cache memory)",
    )
    threads: int | None = Field(None, ge=1, description="CPU threads for generation (default: physical cores)")
    batch_size: int = Field(512, ge=8, description="prompt-processing batch size in tokens")
    parallel: int | None = Field(
        None,
        ge=1,
        le=64,
        description="requests decoded together in one batch, each in its own KV sequence, sharing "
        "the --ctx-size cells (default: 4 with GPU offload, 1 on CPU, where a compute-bound "
        "decode gained nothing from batching in benchmarks/RESULTS.md). With more than 1, "
        "another conversation's KV cells change llama.cpp's rounding, so temperature-0 text may "
        "differ at near-ties",
    )
    state_cache_mb: int = Field(
        1024,
        ge=0,
        description="RAM for saved KV states of conversations that lost their batch slot (more "
        "conversations than --parallel), so they resume without a full prefill; least recently "
        "used first out (0 = off)",
    )
    lookup_draft_tokens: int = Field(
        0,
        ge=0,
        le=16,
        description="prompt-lookup speculative decoding: up to this many tokens guessed from "
        "earlier in the conversation and verified in one step (0 = off; it lost on CPU here, "
        "see benchmarks/RESULTS.md)",
    )
    flash_attn: Literal["auto", "on", "off"] = Field(
        "auto",
        description="flash attention: `auto` (llama.cpp's and llama-server's default: on where the "
        "backend has it, CPUs included; faster decode here), `on`, or `off` (as llama-cpp-python's "
        "Llama: temperature-0 text then matches it token for token; near-ties can differ)",
    )
    llama_lib: str | None = Field(
        None,
        description="directory of another libllama for llama-cpp-python to load instead of its "
        "vendored one (LLAMA_CPP_LIB_PATH), e.g. the newer, faster llama.cpp that "
        "`python -m benchmarks.llama_server_build --native` builds; it must come from a llama.cpp "
        "with the same llama.h API",
    )
    stream_interval_ms: float = Field(
        50.0,
        ge=0,
        le=1000,
        description="streamed text reaches the HTTP side at most this often, in milliseconds (the "
        "first text and the end at once). Each hand-off wakes the event loop, which on a busy CPU "
        "cost the decoding thread a scheduler slice per token (benchmarks/RESULTS.md); 0 = every "
        "token",
    )
    engine: Literal["llama", "openai"] = Field(
        "llama",
        description="what generates tokens: `llama` (a local GGUF on llama.cpp) or `openai` "
        "(an OpenAI-compatible server at --engine-url: vLLM, llama-server, another "
        "codeact-server; --model then names the backend's model, `auto` = its first)",
    )
    engine_url: str | None = Field(
        None, description="base URL of the backend for --engine openai, e.g. http://gpu-box:8000"
    )
    engine_grammar: Literal["llama-server", "vllm", "none"] = Field(
        "llama-server",
        description="how the action grammar reaches the --engine openai backend: `llama-server` "
        "(`grammar` field; also codeact-server), `vllm` (`guided_grammar`), or `none` (stop "
        "strings only; /health says so)",
    )

    # -- HTTP ----------------------------------------------------------------------------
    host: str = Field("127.0.0.1", description="address to bind")
    port: int = Field(8000, ge=0, le=65535, description="TCP port to bind (0 = any free port)")
    max_queue: int = Field(
        8,
        ge=1,
        description="generation requests allowed to wait behind the running ones; more get 503 with Retry-After",
    )
    log_level: str = Field("info", description="log level: debug, info, warning, error")

    # -- agent ---------------------------------------------------------------------------
    max_turns: int = Field(5, ge=1, le=50, description="default agent turns per request")
    execution_timeout: float = Field(60.0, gt=0, le=600, description="default wall-clock seconds per code execution")
    max_sessions: int = Field(
        32,
        ge=1,
        description="live agent sessions (each holds a sandbox worker); at the cap the least recently "
        "used idle session is closed to make room, and a new one gets 429 only when none is idle",
    )
    background_max_running: int = Field(
        16, ge=1, description="background runs (`background: true`) running at once per API key; more get 429"
    )
    background_max_events: int = Field(
        10000,
        ge=16,
        description="events kept per background run for replay (`starting_after`); older ones are dropped",
    )
    session_ttl: float = Field(1800.0, gt=0, description="seconds an idle agent session is kept before it is closed")
    sandbox_memory_mb: int = Field(1024, ge=64, description="address-space limit of each sandbox worker in MiB")
    sandbox_pool_size: int = Field(
        2, ge=0, description="sandbox workers started ahead of time so new sessions start fast"
    )
    sandbox_network: bool = Field(
        False, description="allow network access from agent code (off: isolated when possible)"
    )
    sandbox_keep_processes: bool = Field(
        False,
        description="let processes a code cell starts keep running after the cell ends (off: "
        "they are ended with the cell, so its wall-clock limit bounds them too)",
    )
    sandbox_isolation: Literal["auto", "namespaces", "landlock", "rlimits"] = Field(
        "auto",
        description="how agent code is confined: auto = the strongest this machine allows "
        "(namespaces with bubblewrap, else landlock, else rlimits, with a warning); a named "
        "level is demanded: start-up fails with the reason where it is unavailable",
    )
    sandbox_env: Path = Field(
        default_factory=default_env_dir,
        description="the sandbox's own Python environment (a venv made by `codeact-server "
        "sandbox setup`): agent code runs in its interpreter, with the scientific stack and "
        "without the server's packages",
    )
    sandbox_python: Path | None = Field(
        None,
        description="run agent code in this interpreter instead of --sandbox-env's, used as it "
        "is (e.g. an existing venv's bin/python; CPython 3.11+, its packages are what the code "
        "can import)",
    )
    sandbox_preimport: StrList = Field(
        default_factory=lambda: list(DEFAULT_PREIMPORT),
        description="modules each pooled sandbox worker imports before a session gets it, so "
        "the session's first import is instant (env: comma-separated; empty = none; skipped "
        "when --sandbox-memory-mb is under 768)",
    )

    tool_timeout: float = Field(
        60.0,
        gt=0,
        le=3600,
        description="seconds a call from agent code to an MCP tool may take (the execution's own "
        "time limit pauses while it waits); a client's function tool waits for the client instead",
    )
    tool_wait_limit: float = Field(
        600.0,
        gt=0,
        le=86400,
        description="seconds all tool calls of one code execution may wait in total, a client's "
        "function tools included (the client decides nothing past it): then a call fails in the "
        "code with ToolCallError, while the sandbox's memory and CPU limits hold throughout",
    )
    approval_timeout: float = Field(
        600.0,
        gt=0,
        le=86400,
        description="seconds a call from agent code to an MCP tool that needs approval waits for a "
        "person's decision (the execution's time limit pauses meanwhile); then it is denied and "
        "raises PermissionError in the code. Bounded by --tool-wait-limit",
    )
    mcp_config: Path | None = Field(
        None,
        description="JSON file of MCP servers in the common `mcpServers` shape (stdio: command, "
        "args, env, cwd; Streamable HTTP: url, headers): each tool becomes a Python function "
        "`<server>_<tool>` in the sandbox, answered outside it; a server's `require_approval` says which "
        "calls wait for a person, without it those not annotated readOnlyHint (default: none)",
    )

    # -- security and operations ---------------------------------------------------------
    api_key: StrList = Field(
        default_factory=list,
        description="API key clients must send as `Authorization: Bearer KEY`; repeat the flag "
        "for several keys (env: comma-separated). Prefer the env var or --api-key-file: flags "
        "show in `ps`",
    )
    api_key_file: Path | None = Field(
        None, description="file with one API key per line (blank lines and # comments ignored)"
    )
    insecure_no_auth: bool = Field(
        False,
        description="allow serving a non-loopback address without an API key (anyone who "
        "reaches the port can run code on this machine)",
    )
    cors_origin: StrList = Field(
        default_factory=list,
        description="browser origin allowed to call the API cross-site, e.g. "
        "https://app.example; repeat for several, `*` for any (default: none, CORS off). Pages "
        "of other origins than these and the server's own get 403 on POST, PUT, PATCH, DELETE",
    )
    allowed_host: StrList = Field(
        default_factory=list,
        description="another name clients may reach the server by (the Host header, any port), "
        "e.g. gpu-box.lan; repeat for several (env: comma-separated). Always accepted: localhost, "
        "127.0.0.1, [::1] and the --host address unless 0.0.0.0 or ::; any other Host gets 403, "
        "so a web page cannot drive the server through DNS rebinding. `*` accepts any Host: "
        "insecure, any web page the user opens could then run code here",
    )
    max_request_bytes: int = Field(
        8 * MiB,
        ge=1024,
        description="largest request body in bytes; bigger gets 413 (M3ToolEval tool sources need ~70 KB)",
    )
    max_messages: int = Field(1000, ge=1, description="most messages one request may carry; more get 400")
    max_tokens_limit: int = Field(
        32768,
        ge=1,
        description="largest max_tokens a request may ask for (per turn for /v1/agent); more get 400",
    )
    shutdown_grace: float = Field(
        30.0,
        ge=0,
        description="seconds SIGTERM waits for in-flight requests before cancelling them and "
        "stopping every sandbox worker",
    )
    audit_log: Path | None = Field(
        None,
        description="append one JSON line per agent run (request, steps, observations) to this file (default: off)",
    )
    store: str = Field(
        "auto",
        description="where stored responses, background runs and their events, and agent runs with "
        "their steps are kept, so a restart loses none of them: a SQLite file path, `auto` "
        "(`$XDG_DATA_HOME/codeact-server/store.db`, else `~/.local/share/...`), or `none` (in memory, "
        "lost when the server stops)",
    )
    store_max_age: float = Field(
        30 * 86400.0, gt=0, description="seconds a stored record is kept (default 30 days, as OpenAI keeps responses)"
    )
    store_max_mb: int = Field(
        1024, ge=1, description="most MiB the store's records may take; beyond it the oldest go first"
    )

    def store_path(self) -> Path | None:
        """The store's file (None: in memory)."""
        if self.store == "none":
            return None
        if self.store == "auto":
            data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
            return Path(data) / "codeact-server" / "store.db"
        return Path(self.store).expanduser()

    def loop_policy(self) -> LoopPolicy:
        """The server's default loop policy: its ``agent_<name>`` fields."""
        return LoopPolicy(**{name: getattr(self, SETTING_PREFIX + name) for name in LoopPolicy.model_fields})

    @field_validator("api_key", "cors_origin", "allowed_host", mode="before")
    @classmethod
    def _split_commas(cls, value: Any) -> Any:
        """Env vars hold lists as ``a,b``; a list from repeated flags is taken as given."""
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("sandbox_preimport", mode="before")
    @classmethod
    def _module_list(cls, value: Any) -> Any:
        """Comma-separated in the env var; a repeated flag may be given ``""`` to mean none."""
        if isinstance(value, str):
            value = value.split(",")
        if isinstance(value, list):
            return [str(part).strip() for part in value if str(part).strip()]
        return value


def _serve_flags() -> tuple[str, ...]:
    """Every field, the loop's options right after the other agent settings."""
    names = [name for name in Settings.model_fields if not name.startswith(SETTING_PREFIX)]
    after = names.index("execution_timeout") + 1
    return (*names[:after], *setting_fields(), *names[after:])


SERVE_FLAGS: tuple[str, ...] = _serve_flags()
