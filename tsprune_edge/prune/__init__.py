"""Pruning: unstructured masks, hardware-shaped sparsity, structured (DepGraph) pruning, fine-tuning, analysis."""
