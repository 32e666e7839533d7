"""The deployment form: export-friendly, mathematically equivalent versions of operations that do not export.

A module that has one sets `self.use_deployment_form = False` in its constructor and branches on it in
`forward` (for example rfft/irfft as matrix products with precomputed bases). Export switches every such module
on inside `deployment_form(model)` and restores them afterwards, so training code never sees the change.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn


@contextmanager
def deployment_form(model: nn.Module) -> Iterator[nn.Module]:
    switchable = [m for m in model.modules() if hasattr(m, "use_deployment_form")]
    previous = [m.use_deployment_form for m in switchable]
    for module in switchable:
        module.use_deployment_form = True
    try:
        yield model
    finally:
        for module, value in zip(switchable, previous, strict=True):
            module.use_deployment_form = value
