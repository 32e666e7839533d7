"""The default job's settings, without torch: `export`, `pipeline` and the library's ExportJob run this when no option
says otherwise, and the CLI declares its option defaults from here."""

DEFAULT_MODEL = "transformer"
DEFAULT_DATA = "synthetic"  # built in: the default job needs no download
DEFAULT_EPOCHS = 3  # training epochs of the default job (the full published schedule: `train`)
DEFAULT_FINETUNE_EPOCHS = 1  # after pruning; the dense reference gets the same
DEFAULT_METHOD = "structured"
DEFAULT_SPARSITY = 0.5
