"""A stored run read back: as a Jupyter notebook (``notebook``), re-executed in a fresh
sandbox without the model (``replay``), or continued from any step as a new run (``fork``).
All take the store's plain-JSON record of a run (``server.store.agent_runs``); the routes
fetch it and check whose it is.
"""
