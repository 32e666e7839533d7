"""The dimensions structured pruning may shrink, without torch: a sweep spec names them before any model loads."""

DIMENSIONS = ("heads", "ffn", "width")  # `ffn` also covers DLinear's lags
DEFAULT_DIMENSIONS = ("heads", "ffn")  # the default: earlier results stay comparable
