"""Ask before acting: which MCP tool calls from agent code need a person's approval, and the
pending requests that wait for one (issue 39)."""
