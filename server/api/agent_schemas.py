"""The ``/v1/agent`` request bodies (chat completions plus agent extras; a fork's), and the
loop's options they give (``loop_options``: also what the Responses code interpreter asks for)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator, model_validator

from server.agent.loop import DEFAULT_TURN_TOKENS, AgentOptions
from server.agent.options import option_names, request_fields
from server.agent.service import RunRequest
from server.agent.turns import StructureMode
from server.openai.schemas import ChatBody, ChatMessage, FunctionTool
from server.openai.unsupported import refuse
from server.settings import Settings
from server.tools.client_calls import ClientFunction
from server.tools.toolbox import ToolSpec


class ToolIn(BaseModel):
    """A Python tool: ``source`` defines it in the sandbox; the rest describes it to the model."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=100)
    signature: str = Field("", max_length=2000)
    description: str = Field("", max_length=8000)
    source: str = Field(min_length=1, max_length=2_000_000)

    def spec(self) -> ToolSpec:
        return ToolSpec(self.name, self.signature, self.description, self.source)


def _only(schema: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
    """A ``json_schema_extra`` that replaces a field's documented schema with ``schema``."""

    def replace(generated: dict[str, Any]) -> None:
        generated.clear()
        generated.update(schema)

    return replace


if TYPE_CHECKING:  # the type checker sees the plain body; the options are read by name
    _ChatBodyWithLoopOptions = ChatBody
else:
    _ChatBodyWithLoopOptions = create_model("_ChatBodyWithLoopOptions", __base__=ChatBody, **request_fields())


#: Loop options that were removed (issue 26); a request that sends one gets a 400 naming it.
REMOVED_OPTIONS = ("restate_task", "unverified_answer")


class AgentRequest(_ChatBodyWithLoopOptions):
    """Chat-completions body; ``max_tokens`` is per turn. Extras are all optional.

    The loop's options (``on_repeat``...) are fields made from ``server.agent.options``: each
    overrides the server's ``--agent-<name>`` setting when not null.
    """

    max_turns: int | None = Field(None, ge=1, le=50)
    session_id: str | None = Field(None, max_length=100)
    background: bool = Field(
        False,
        description="run detached from this connection: answered at once (202); follow the run at "
        "GET /v1/agent/sessions/{session_id}/events (Last-Event-ID resumes), cancel it at .../cancel",
    )
    tools: list[ToolIn | FunctionTool] | None = Field(
        None,
        max_length=100,
        description="Python tools ({name, signature, description, source}) defined in the sandbox, "
        "and OpenAI function tools ({type: function, function: {name, description, parameters}}): "
        "sandbox functions whose calls come back to the client as tool_calls",
    )
    execution_timeout: float | None = Field(None, gt=0, le=600)
    mcp_servers: list[str] | None = Field(
        None,
        max_length=100,
        description="the configured MCP servers whose tools a new session gets as Python functions "
        "(default: all; [] = none); only when the session is created",
    )
    grammar: bool | Literal["phased", "gbnf", "none"] = Field(
        True,
        description="enforce the action format: true/'phased' (thought, then exactly one "
        "action), 'gbnf' (one grammar over the whole turn), false/'none' (unconstrained)",
    )

    # Chat fields the loop cannot honour: the schema admits only their neutral values; the
    # validator below answers any other with a 400 naming the field.
    logprobs: bool | None = Field(None, json_schema_extra=_only({"enum": [False, None]}))
    top_logprobs: int | None = Field(None, json_schema_extra=_only({"type": "null"}))
    tool_choice: Any = Field(None, json_schema_extra=_only({"type": "null"}))
    parallel_tool_calls: bool | None = Field(None, json_schema_extra=_only({"type": "null"}))
    stop: Any = Field(None, json_schema_extra=_only({"type": "null"}))

    @field_validator("stop")
    @classmethod
    def _stop_list(cls, value: Any) -> Any:
        """Replaces ChatBody's validator of the same name: any stop value but null or [] is
        refused below by name, so it must reach that check as sent (ChatBody's would call
        ``len`` on ``false`` and answer a 500)."""
        return value

    @model_validator(mode="after")
    def _refuse_chat_only_fields(self) -> AgentRequest:
        """Fields of the chat body that the agent loop cannot honour are a 400, not ignored:
        the loop's turns are CodeAct turns (no tool calls, JSON formats or logprobs), and
        its own grammar and stop strings decide where a turn ends."""
        if self.response_format and self.response_format.get("type") not in (None, "text"):
            raise refuse("response_format", "is not supported by /v1/agent: the answer is the <solution> text")
        for tool in self.tools or []:
            if isinstance(tool, FunctionTool) and (tool.type != "function" or tool.function is None):
                raise refuse(
                    "tools",
                    f"of type {tool.type!r} are not supported by /v1/agent: only function "
                    "tools and Python tools ({name, source})",
                )
        # The agent decides in code when to call a client tool: only the default choice fits.
        tool_choice = None if self.tool_choice == "auto" else self.tool_choice
        for name, value in (
            ("tool_choice", tool_choice),
            ("parallel_tool_calls", self.parallel_tool_calls),
            ("top_logprobs", self.top_logprobs),
            ("stop", self.stop),
        ):
            if value is not None and value != []:
                raise refuse(name, "is not supported by /v1/agent")
        if self.logprobs:
            raise refuse("logprobs", "is not supported by /v1/agent")
        for removed in REMOVED_OPTIONS:  # a client that still asks for one must hear it is gone
            if removed in (self.model_extra or {}):
                raise refuse(removed, "was removed: it measured no gain (benchmarks/RESULTS.md keeps its figures)")
        return self

    def _single_run(self) -> str | None:
        """Why this request can only be one run (None: it may sample).

        A session's interpreter cannot be split into several runs, and a run that waits for
        a client's tool result is one run the client answers.
        """
        if self.session_id is not None:
            return "on a request that continues a session (its interpreter is one run's)"
        if any(isinstance(tool, FunctionTool) for tool in self.tools or []) or (
            self.messages and self.messages[-1].role == "tool"
        ):
            return "with the client's function tools (a run waiting for a tool result is one run)"
        return None

    def sample_count(self, settings: Settings) -> int:
        """How many runs answer this request: its ``samples``, else the server's
        ``--agent-samples`` where the request can sample (see ``_single_run``), else 1.

        Asking for more than one where the request is one run is a 400 naming ``samples``
        (the route asks once the session it names is known to exist: an unknown one is a 404).
        """
        asked: int | None = getattr(self, "samples", None)
        single = self._single_run()
        if asked is not None and asked > 1 and single:
            raise refuse("samples", f"must be 1 {single}")
        if asked is not None:
            return asked
        return 1 if single else settings.loop_policy().samples

    def source_tools(self) -> list[ToolSpec]:
        """The Python tools (defined in the sandbox by their source)."""
        return [t.spec() for t in self.tools or [] if isinstance(t, ToolIn)]

    def function_tools(self) -> list[ClientFunction]:
        """The client's OpenAI function tools (answered by the client through tool_calls)."""
        return [
            ClientFunction(t.function.name, t.function.description, t.function.parameters)
            for t in self.tools or []
            if isinstance(t, FunctionTool) and t.function is not None
        ]

    def structure(self) -> StructureMode:
        if self.grammar is True:
            return "phased"
        if self.grammar is False:
            return "none"
        return self.grammar

    def agent_options(self, settings: Settings) -> AgentOptions:
        """The loop's options: this request's, else the server's defaults."""
        return loop_options(
            settings,
            max_turns=self.max_turns,
            max_tokens=self.token_budget(),
            temperature=self.temperature,
            top_p=self.top_p,
            seed=self.seed,
            execution_timeout=self.execution_timeout,
            structure=self.structure(),
            policy={name: getattr(self, name) for name in option_names()},
        )

    def run_request(self, settings: Settings) -> RunRequest:
        """This body in the agent's own terms (``developer`` messages become ``system``)."""
        return RunRequest(
            messages=[_run_message(m) for m in self.messages],
            options=self.agent_options(settings),
            tools=self.source_tools(),
            functions=self.function_tools(),
            mcp_servers=self.mcp_servers,
            session_id=self.session_id,
        )


def loop_options(
    settings: Settings,
    *,
    max_turns: int | None,
    max_tokens: int | None,
    temperature: float,
    top_p: float,
    seed: int | None = None,
    execution_timeout: float | None = None,
    structure: StructureMode = "phased",
    policy: dict[str, Any] | None = None,
) -> AgentOptions:
    """The loop's options of a request in any API's terms: those it gives, else the server's
    defaults (``policy``: the loop options it sets; ``None`` for one it leaves to the server)."""
    return AgentOptions(
        max_turns=max_turns or settings.max_turns,
        max_tokens=max_tokens or DEFAULT_TURN_TOKENS,
        temperature=temperature,
        top_p=top_p,
        seed=seed,
        execution_timeout=execution_timeout or settings.execution_timeout,
        structure=structure,
        policy=settings.loop_policy().overridden(policy or {}),
    )


def _run_message(message: ChatMessage) -> dict[str, str]:
    """A prompt message; a tool result keeps the ``tool_call_id`` it answers."""
    prompt = message.as_prompt_message()
    if message.role == "tool" and message.tool_call_id:
        prompt["tool_call_id"] = message.tool_call_id
    return prompt


_USER_MESSAGES = {
    "type": "array",
    "maxItems": 100,
    "items": {
        "type": "object",
        "properties": {"role": {"const": "user"}, "content": {"type": "string"}},
        "required": ["role", "content"],
    },
}
_NONE_OR_EMPTY = {"anyOf": [{"type": "null"}, {"type": "array", "maxItems": 0}]}


class ForkRequest(AgentRequest):
    """``POST /v1/agent/runs/{id}/fork``: where to fork, and any ``/v1/agent`` field for the run
    that goes on from there (options, ``max_turns``, ``max_tokens``, ``stream``, ``background``).
    ``messages`` are optional: user messages added after step ``at_step``, as a follow-up."""

    messages: list[ChatMessage] = Field(  # type: ignore[assignment]
        default_factory=list, max_length=100, json_schema_extra=_only(_USER_MESSAGES)
    )
    at_step: int = Field(ge=0, description="the last step of the stored run to replay; the fork goes on after it")
    # What a fork cannot take, documented as such (the validator names the field if sent).
    session_id: str | None = Field(None, json_schema_extra=_only({"type": "null"}))
    tools: list[ToolIn | FunctionTool] | None = Field(None, json_schema_extra=_only(_NONE_OR_EMPTY))
    samples: int | None = Field(None, json_schema_extra=_only({"anyOf": [{"type": "null"}, {"const": 1}]}))

    @model_validator(mode="after")
    def _refuse_what_a_fork_cannot_take(self) -> ForkRequest:
        """A fork continues the run's own conversation in a new session: it names no session,
        defines no tools (the recorded code ran without them) and is one run."""
        if self.session_id is not None:
            raise refuse("session_id", "cannot be given to a fork: it makes a new session")
        if self.tools:
            raise refuse("tools", "cannot be given to a fork: it continues the stored run's conversation")
        if any(m.role != "user" for m in self.messages):
            raise refuse("messages", "of a fork may only be user messages (added after at_step)")
        return self
