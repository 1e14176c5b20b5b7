"""Running a model: the Engine seam, its scheduler and stop matching, and the backends (llama.cpp, remote, scripted)."""
