"""A run: planning cases, executing one, the runner that drives a whole run, and its fidelity
checks."""
