"""Series decomposition (Autoformer, FEDformer, DLinear): trend = moving average, seasonal = the rest.

The moving average pads both ends by repeating the edge values, so the trend keeps the input's length;
written with AvgPool1d and concatenation, which export to ONNX and TFLite.
"""

from __future__ import annotations

import torch
from torch import nn


class MovingAverage(nn.Module):
    """Moving average over the time axis of [batch, time, channels], same length out."""

    def __init__(self, kernel_size: int) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.pool = nn.AvgPool1d(kernel_size, stride=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        front = (self.kernel_size - 1) // 2
        back = self.kernel_size - 1 - front
        x = torch.cat([x[:, :1].expand(-1, front, -1), x, x[:, -1:].expand(-1, back, -1)], dim=1)
        return self.pool(x.transpose(1, 2)).transpose(1, 2)


class SeriesDecomposition(nn.Module):
    """x -> (seasonal, trend) with trend the moving average of x."""

    def __init__(self, kernel_size: int) -> None:
        super().__init__()
        self.moving_average = MovingAverage(kernel_size)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        trend = self.moving_average(x)
        return x - trend, trend


class MixtureDecomposition(nn.Module):
    """FEDformer's mixture-of-experts decomposition: a softmax-weighted mix of several moving averages,
    the weights computed per time step and channel-shared from the input."""

    def __init__(self, kernel_sizes: tuple[int, ...], channels: int = 1) -> None:
        super().__init__()
        self.averages = nn.ModuleList(MovingAverage(k) for k in kernel_sizes)
        self.gate = nn.Linear(channels, len(kernel_sizes))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        trends = torch.stack([average(x) for average in self.averages], dim=-1)  # [B, L, C, K]
        weights = torch.softmax(self.gate(x), dim=-1).unsqueeze(-2)  # [B, L, 1, K]
        trend = (trends * weights).sum(dim=-1)
        return x - trend, trend


class SeasonalLayerNorm(nn.Module):
    """Layer norm minus its mean over time (Autoformer's "my_Layernorm"): a seasonal part has no level. No bias:
    removing the time mean would cancel it."""

    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(x)
        return x - x.mean(dim=1, keepdim=True)


def decoder_init(decomposition: nn.Module, history: torch.Tensor, label_len: int, pred_len: int,
                 target: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The decomposition decoders' start (Autoformer, FEDformer). Seasonal: the seasonal part of the last
    label_len inputs, then zeros. Trend: their trend, then the input mean over time; of input `target` alone
    when one output is forecast from several inputs."""
    seasonal, trend = decomposition(history)
    start = history.shape[1] - label_len
    mean = history.mean(dim=1, keepdim=True).expand(-1, pred_len, -1)
    seasonal = torch.cat([seasonal[:, start:], torch.zeros_like(mean)], dim=1)
    trend = torch.cat([trend[:, start:], mean], dim=1)
    if target is not None:
        trend = trend[:, :, target : target + 1]
    return seasonal, trend
