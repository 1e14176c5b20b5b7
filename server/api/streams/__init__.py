"""How responses stream: SSE framing, watching for a client that left, and runs that outlive it."""
