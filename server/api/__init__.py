"""HTTP: the app factory, middleware, request guards, SSE and the translation of errors."""
