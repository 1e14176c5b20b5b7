"""The codeact-server command line: serve, run, pull, bundle, sandbox."""
