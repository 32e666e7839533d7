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
