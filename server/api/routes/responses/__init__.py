"""``POST /v1/responses``, ``GET``/``DELETE /v1/responses/{id}``: OpenAI's Responses API.

One module per job: ``create`` answers ``POST`` (as a chat completion, ``chat_events`` its
stream; with ``code_interpreter``, as an agent run: ``interpreter``, ``interpreter_tool``,
``interpreter_items``), ``records`` keeps the answers, ``stored`` reads, cancels and deletes them.

The request is translated into a chat completion (``server.openai.responses_items``) and runs
through the same prompt, grammar and parsing as ``/v1/chat/completions``; only the shapes
differ. Function calls come back as ``function_call`` output items, text as one
``message`` item; a response cut by ``max_output_tokens`` has status ``incomplete``.

Streaming sends the standard typed events (``event:`` + ``data:`` lines, each with a
``sequence_number``): ``response.created``, ``response.in_progress``, then per item
``response.output_item.added`` / ``response.content_part.added`` /
``response.output_text.delta``... ``.done`` (or ``response.function_call_arguments.delta``
/ ``.done`` for a call), and ``response.completed`` (``response.incomplete`` when cut)
carrying the whole response. As on chat completions, text that may still become a tool
call is held back until it is decided; a call's arguments stream in pieces as generated.

``previous_response_id`` continues from a stored response: its conversation (without its
``instructions``, as OpenAI does) plus its output come before the new input. Responses are
kept in the server's store (``server.store``: on disk unless ``--store none``, so a restart
keeps them; pruned by age and size) when ``store`` is true (the default), each readable only
with the API key that made it; a pruned, deleted or unstored id is a 404 naming it.

A request whose tools hold ``code_interpreter`` runs the agent loop instead, in a sandbox
session that is its container (``server.api.routes.responses.interpreter``).
"""
