"""Random inputs in the deployment signature, shared by the model tests."""

from __future__ import annotations

import torch
from torch import nn

# Short windows that keep parametrised model tests fast.
SMALL = dict(seq_len=48, label_len=24, pred_len=24)
# month 1-12, day 1-28, weekday 0-6, hour 0-23: the calendar features of hourly data.
_CALENDAR_RANGES = ((1, 13), (1, 29), (0, 7), (0, 24))


def random_calendar(batch: int, length: int, generator: torch.Generator | None = None) -> torch.Tensor:
    return torch.stack([torch.randint(lo, hi, (batch, length), generator=generator) for lo, hi in _CALENDAR_RANGES],
                       dim=-1).float()


def inputs(model: nn.Module, batch: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded history and calendar sized from `model.config`."""
    cfg = model.config
    generator = torch.Generator().manual_seed(0)
    history = torch.randn(batch, cfg.seq_len, cfg.enc_in, generator=generator)
    return history, random_calendar(batch, cfg.seq_len + cfg.pred_len, generator)


def data_record(model: nn.Module) -> dict:
    """A checkpoint's `data` record for a model built in a test (ETTh1's names; no file behind it)."""
    cfg = model.config
    return {"name": "ETTh1", "path": None, "seq_len": cfg.seq_len, "label_len": cfg.label_len,
            "pred_len": cfg.pred_len, "features": "M", "target": "OT", "sha256": None}
