"""tsprune-edge: what pruning buys a Transformer forecaster on the board and runtime you ship."""

__version__ = "0.1.0"
