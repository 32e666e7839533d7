"""Latency-budget pruning (`tsprune-edge fit`); docs/fit.md. Defaults the CLI shares live here, torch-free."""

DEFAULT_FIT_ROUNDS = 4  # prune, fine-tune and bench at most this many times
