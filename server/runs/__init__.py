"""A stored run read back: as a Jupyter notebook (``notebook``), or re-executed in a fresh
sandbox without the model (``replay``). Both take the store's plain-JSON record of a run
(``server.store.agent_runs``); the routes fetch it and check whose it is.
"""
