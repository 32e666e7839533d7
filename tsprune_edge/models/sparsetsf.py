"""SparseTSF (Lin et al., ICML 2024, "SparseTSF: Modeling Long-term Time Series Forecasting with 1k Parameters"):
forecast one phase of the period at a time. Each series (shared weights across variables) has its window mean
removed, is smoothed by a residual zero-padded convolution over time (one channel, kernel 2 * (period // 2) + 1,
no bias), cut into `seq_len / period_len` periods, and every phase (step within the period) is forecast from
its own past values by one shared Linear(seq_len / period_len, pred_len / period_len) without bias; the mean is
added back. On ETTh1 at lookback 720 that is 25 + 30 * 4 = 145 weights. It has no attention, no hidden width and
ignores the calendar input.

Presets: `paper` is the authors' ETTh1 setting (lss-1138/SparseTSF scripts/SparseTSF/linear/etth1.sh: seq_len
720, period_len 24, the `linear` model type); `small` is the same at our common seq_len 96.
Schedule: the same script: lr 0.02, batch 256, 30 epochs, patience 5; run_longExp.py's lradj type3 (lr for 3
epochs, then * 0.9 each epoch).

Departures from the authors, each so that any window our CLI accepts builds a model:
- The authors' reshape needs seq_len and pred_len to be whole periods. A shorter history is padded at its start
  with zeros after the mean is removed (the window's mean, as the convolution's own zero padding is) up to the
  next whole period, and the forecast is made for whole periods and cut to pred_len. With whole periods, as in
  every preset, both are no-ops.
- One output from several inputs (features MS) returns the target input's forecast, as the other channel-
  independent models here do. The `mlp` model type is not offered (the paper's results are the linear one's).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from tsprune_edge.models.layers import select_target
from tsprune_edge.models.registry import ForecastConfig, TrainSchedule, register_model


@dataclass
class SparseTSFConfig(ForecastConfig):
    period_len: int = 24


_SMALL = dict(seq_len=96, period_len=24)
_PAPER = dict(seq_len=720, period_len=24)


@register_model("sparsetsf", SparseTSFConfig, {"paper": _PAPER, "small": _SMALL},
                TrainSchedule(lr=0.02, batch_size=256, max_epochs=30, lr_decay="hold3", patience=5),
                "SparseTSF (Lin et al. 2024): one linear map per phase of the period, under 1k weights", tiny=True)
class SparseTSF(nn.Module):
    def __init__(self, cfg: SparseTSFConfig) -> None:
        super().__init__()
        period = cfg.period_len
        self.pred_len, self.period = cfg.pred_len, period
        self.c_out, self.target_index = cfg.c_out, cfg.target_index
        segments_in, self.segments_out = -(-cfg.seq_len // period), -(-cfg.pred_len // period)
        self.length, self.front = segments_in * period, segments_in * period - cfg.seq_len
        self.aggregate = nn.Conv1d(1, 1, kernel_size=2 * (period // 2) + 1, padding=period // 2, bias=False)
        self.linear = nn.Linear(segments_in, self.segments_out, bias=False)

    def forward(self, history: torch.Tensor, calendar: torch.Tensor) -> torch.Tensor:
        mean = history.mean(dim=1, keepdim=True)  # [B, 1, C]
        x = (history - mean).transpose(1, 2)  # [B, C, L]
        if self.front:
            x = F.pad(x, (self.front, 0))
        n_vars = x.shape[1]
        x = self.aggregate(x.reshape(-1, 1, self.length)).reshape(-1, n_vars, self.length) + x
        phases = x.reshape(-1, n_vars, self.length // self.period, self.period).transpose(2, 3)  # [B, C, P, S]
        y = self.linear(phases).transpose(2, 3).reshape(-1, n_vars, self.segments_out * self.period)
        forecast = y[:, :, : self.pred_len].transpose(1, 2) + mean  # [B, pred_len, C]
        return select_target(forecast, self.c_out, self.target_index)
