"""One module per endpoint family, a folder where a family has several jobs (``agent/``,
``responses/``); each turns HTTP into calls on the agent or the engine."""
