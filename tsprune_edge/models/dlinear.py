"""DLinear (Zeng et al., AAAI 2023, "Are Transformers Effective for Time Series Forecasting?"): the linear
baseline that questioned the Transformer forecasters. The history is split into trend (moving average,
kernel 25) and seasonal remainder; one Linear(seq_len, pred_len) maps each part along time and the two
forecasts are summed. The layers are shared across variables (individual=False, the paper's ETTh1 setting)
or one per variable (individual=True, "DLinear-I"). It has no attention and ignores the calendar input.

Presets: `paper` and `small` are identical (2 * (seq_len * pred_len + pred_len) weights, already tiny).
Schedule: the DLinear authors' ETTh1 recipe (cure-lab/LTSF-Linear scripts/EXP-LongForecasting/Linear/etth1.sh:
lr 0.005, batch 32; run_longExp.py: 10 epochs, lradj type1 = halve each epoch, patience 3), here at
seq_len 96 where the authors' ETTh1 runs used 336.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from tsprune_edge.models.decomposition import SeriesDecomposition
from tsprune_edge.models.layers import select_target
from tsprune_edge.models.registry import ForecastConfig, TrainSchedule, register_model


@dataclass
class DLinearConfig(ForecastConfig):
    moving_avg: int = 25
    individual: bool = False


class TimeLinear(nn.Module):
    """Linear(seq_len, pred_len) along time of [B, L, C]: one shared, or one per variable.

    Structured pruning removes input steps (lags) rather than widths, since DLinear has no hidden width: the
    steps kept are the buffer `lags` (None, and no gather, in a dense model), shared by the per-variable layers.
    """

    def __init__(self, seq_len: int, pred_len: int, n_vars: int, individual: bool) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(seq_len, pred_len) for _ in range(n_vars if individual else 1))
        self.register_buffer("lags", None)

    def keep_lags(self, keep: torch.Tensor) -> None:
        """Keep only the input steps `keep` (sorted indices into the current inputs)."""
        for layer in self.layers:
            layer.weight = nn.Parameter(layer.weight.detach()[:, keep].contiguous())
            layer.in_features = len(keep)
        self.lags = keep.clone() if self.lags is None else self.lags[keep]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.transpose(1, 2)  # [B, C, L]
        if self.lags is not None:
            x = x.index_select(2, self.lags)
        if len(self.layers) == 1:
            return self.layers[0](x).transpose(1, 2)
        return torch.stack([layer(x[:, i]) for i, layer in enumerate(self.layers)], dim=2)


_PRESET = dict(seq_len=96, label_len=48, moving_avg=25, individual=False)


@register_model("dlinear", DLinearConfig, {"paper": dict(_PRESET), "small": dict(_PRESET)},
                TrainSchedule(lr=0.005, batch_size=32, max_epochs=10, lr_decay="halve"),
                "DLinear (Zeng et al. 2023): trend/seasonal decomposition + one linear layer each", tiny=True)
class DLinear(nn.Module):
    def __init__(self, cfg: DLinearConfig) -> None:
        super().__init__()
        self.c_out, self.target_index = cfg.c_out, cfg.target_index
        self.decomposition = SeriesDecomposition(cfg.moving_avg)
        self.seasonal_linear = TimeLinear(cfg.seq_len, cfg.pred_len, cfg.enc_in, cfg.individual)
        self.trend_linear = TimeLinear(cfg.seq_len, cfg.pred_len, cfg.enc_in, cfg.individual)

    def forward(self, history: torch.Tensor, calendar: torch.Tensor) -> torch.Tensor:
        seasonal, trend = self.decomposition(history)
        forecast = self.seasonal_linear(seasonal) + self.trend_linear(trend)  # [B, pred_len, enc_in]
        return select_target(forecast, self.c_out, self.target_index)
