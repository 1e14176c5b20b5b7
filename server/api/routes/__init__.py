"""One module per endpoint family; each turns HTTP into calls on the agent or the engine."""
