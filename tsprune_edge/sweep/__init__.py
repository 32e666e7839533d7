"""The study end to end: train, prune, fine-tune, export, bench and report a grid of models and pruning levels,
resumable cell by cell, on local worker processes or a Ray cluster."""
