"""The agent: the CodeAct observe-act loop, its turns, policy, prompts and sessions (no HTTP)."""
