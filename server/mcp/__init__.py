"""MCP servers as the agent's tools: their config, one supervised connection each, and the
manager that starts, restarts and stops them."""
