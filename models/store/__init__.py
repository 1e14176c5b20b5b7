"""Model files: the catalog, the local store, pulling, GGUF header checks and air-gapped bundles."""
