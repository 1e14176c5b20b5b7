"""Tools that live outside the sandbox (MCP servers, the client's function tools) as Python
functions inside it: their signatures, the per-session registry, the client-tool bridge."""
