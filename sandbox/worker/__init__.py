"""Code that runs inside the sandboxed worker process (stdlib only at start-up)."""
