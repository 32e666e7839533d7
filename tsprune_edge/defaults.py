"""The default job's settings, without torch: `export`, `pipeline` and the library's ExportJob run this when no option
says otherwise, and the CLI declares its option defaults from here."""

DEFAULT_MODEL = "transformer"
DEFAULT_DATA = "synthetic"  # built in: the default job needs no download
DEFAULT_EPOCHS = 3  # training epochs of the default job (the full published schedule: `train`)
DEFAULT_FINETUNE_EPOCHS = 2  # after pruning; the dense reference gets the same epochs, lr and data order
# Knowledge distillation while fine-tuning a pruned model: loss = (1 - d) * MSE(target) + d * MSE(dense's forecast),
# dense as it was before pruning (the teacher). The dense reference is fine-tuned on the target alone (distilling
# from itself only holds it back), so the comparison stays the strict one. Why 2 epochs and 0.5: docs/pruning.md
# "The default fine-tuning" (the main job's structured 0.5 lost 60% test MSE after 1 plain epoch; measured runs in
# benchmarks/results/main_job.md); the job stays near 5 minutes on a quiet 2-core CPU.
DEFAULT_DISTILL = 0.5
DEFAULT_METHOD = "structured"
DEFAULT_SPARSITY = 0.5
