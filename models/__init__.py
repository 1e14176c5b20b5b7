"""Model files and running them: catalog, store (pull/verify) and the engine."""
