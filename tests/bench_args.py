"""Bench options that keep a test's measurement short: two rounds of at least 0.2 s or 20 calls."""

FAST = ("--rounds", "2", "--max-rounds", "2", "--min-time", "0.2", "--min-iters", "20")
# a fit's bench options, and no fine-tuning
QUICK_FIT = ("--rounds", "2", "--min-time", "0.1", "--min-iters", "10", "--finetune-epochs", "0")
