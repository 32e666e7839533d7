"""tsprune_edge.export: torch to ONNX and TFLite, sparsity-aware compression, validation, manifest.

Installed as `tsprune_edge.export` (setuptools maps this folder); never imported as a bare `export`.
"""
