"""What every DepGraph user here shares: the layer kinds, the inputs a model is traced with, and the patch that
keeps torch-pruning's index mapping off our time axes."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

PRUNED_LAYER_TYPES = (nn.Linear, nn.Conv1d)
NORM_TYPES = (nn.LayerNorm, nn.BatchNorm1d)


@contextlib.contextmanager
def time_axes_skipped() -> Iterator[None]:
    """torch-pruning 1.6 maps indices through a concat along dim 1 and a slice of a 3-D tensor along dim 2 as if
    those were the feature axis. Ours are time axes: the moving averages pad [B, L, C] by concatenation along
    dim 1, a circular convolution pads [B, C, L] by slices along dim 2 (Informer's distilling reads a residual
    stream that way). The shifted indices made the group search of a residual stream cycle forever, and before
    that a concat whose widths it could not infer raised TypeError. No model here concatenates or slices the
    feature axis of a pruned dimension, so both mappings are skipped while the context is active (indices pass
    through unchanged, as the library already does for a concat along any other axis)."""
    from torch_pruning.dependency import index_mapping

    originals = index_mapping.update_concat_index_mapping, index_mapping.update_slice_index_mapping
    index_mapping.update_concat_index_mapping = index_mapping.update_slice_index_mapping = _skip
    try:
        yield
    finally:
        index_mapping.update_concat_index_mapping, index_mapping.update_slice_index_mapping = originals


def _skip(graph: object, node: object) -> None:
    return None


def example_inputs(model: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    cfg = model.config
    generator = torch.Generator().manual_seed(0)
    history = torch.randn(1, cfg.seq_len, cfg.enc_in, generator=generator)
    calendar = torch.ones(1, cfg.seq_len + cfg.pred_len, len(cfg.calendar_features))
    return history, calendar
