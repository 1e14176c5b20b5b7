"""How a worker is confined: isolation levels, Landlock, seccomp, capabilities."""
