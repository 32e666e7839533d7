"""The verdict: per board and runtime, what pruning bought against the dense model measured in the same run."""
