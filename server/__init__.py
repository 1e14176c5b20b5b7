"""HTTP server: app factory, settings, routes, the agent loop and sessions."""
