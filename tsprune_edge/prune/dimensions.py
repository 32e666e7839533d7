"""The dimensions structured pruning may shrink and the multiple its widths keep, without torch: a sweep spec names
them before any model loads, and a device profile defaults to the same multiple."""

DIMENSIONS = ("heads", "ffn", "width")  # `ffn` also covers DLinear's lags
DEFAULT_DIMENSIONS = ("heads", "ffn")  # the default: earlier results stay comparable
DEFAULT_ROUND_TO = 8  # kept widths are multiples of this where no board profile or --round-to says otherwise
