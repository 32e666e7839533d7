"""A pruned model's shape record, and rebuilding a model from it without replaying the pruning.

The record lists the shape of every parameter and buffer in the state dict and the attributes that widths
decide but weights do not show (head counts). `conform` resizes a freshly built dense model to the record,
after which `load_state_dict` fills in the weights. Widths are derived from weight shapes wherever PyTorch
layers keep a copy of them (Linear, Conv1d, LayerNorm, BatchNorm1d), so nothing stale is left behind.
"""

from __future__ import annotations

import torch
from torch import nn

# Attributes that hold a width or a count which the weights alone cannot give back.
SYNCED_ATTRIBUTES = ("n_heads",)


def architecture_record(model: nn.Module) -> dict:
    """{"shapes": {state key: shape}, "dtypes": {state key: dtype}, "attributes": {module path: {name: value}}}."""
    state = model.state_dict()
    shapes = {key: list(value.shape) for key, value in state.items()}
    dtypes = {key: str(value.dtype).removeprefix("torch.") for key, value in state.items()}
    attributes = {}
    for path, module in model.named_modules():
        values = {name: getattr(module, name) for name in SYNCED_ATTRIBUTES
                  if isinstance(getattr(module, name, None), int)}
        if values:
            attributes[path] = values
    return {"shapes": shapes, "dtypes": dtypes, "attributes": attributes}


def conform(model: nn.Module, record: dict) -> nn.Module:
    """Resize `model`'s tensors and width attributes in place to those of `record` (values are left empty)."""
    for key, shape in record["shapes"].items():
        path, _, name = key.rpartition(".")
        module = model.get_submodule(path)
        current = getattr(module, name, None)
        if current is not None and list(current.shape) == shape:
            continue
        empty = torch.empty(shape, dtype=getattr(torch, record["dtypes"][key]))
        if isinstance(current, nn.Parameter):
            setattr(module, name, nn.Parameter(empty, requires_grad=current.requires_grad))
        else:
            module.register_buffer(name, empty)
    for path, values in record["attributes"].items():
        module = model.get_submodule(path)
        for name, value in values.items():
            setattr(module, name, value)
    sync_widths(model)
    return model


def sync_widths(model: nn.Module) -> None:
    """Make the width attributes of PyTorch layers agree with their weights."""
    for module in model.modules():
        if isinstance(module, nn.Linear):
            module.out_features, module.in_features = module.weight.shape
        elif isinstance(module, nn.Conv1d):
            module.out_channels = module.weight.shape[0]
            module.in_channels = module.weight.shape[1] * module.groups
        elif isinstance(module, nn.LayerNorm):
            if module.weight is not None:
                module.normalized_shape = tuple(module.weight.shape)
        elif isinstance(module, nn.BatchNorm1d):
            module.num_features = module.running_mean.shape[0]

