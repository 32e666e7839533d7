"""Building blocks shared by the models, written so that every one exports to ONNX and TFLite.

Attention keeps separate q, k, v and output projections so that structured pruning can remove whole heads;
head width is read from the weights at run time, so only `n_heads` must change when heads are removed.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from tsprune_edge.data.calendar import FEATURE_MAX


class MultiHeadAttention(nn.Module):
    def __init__(self, d_model: int, n_heads: int, dropout: float, d_head: int | None = None) -> None:
        super().__init__()
        d_head = d_head or d_model // n_heads
        self.n_heads = n_heads
        self.q_proj = nn.Linear(d_model, d_head * n_heads)
        self.k_proj = nn.Linear(d_model, d_head * n_heads)
        self.v_proj = nn.Linear(d_model, d_head * n_heads)
        self.out_proj = nn.Linear(d_head * n_heads, d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        """`mask` is a bool [L, S] tensor, True where attention is forbidden."""
        batch, length, _ = query.shape
        source = key.shape[1]
        q = self.q_proj(query).reshape(batch, length, self.n_heads, -1).transpose(1, 2)
        k = self.k_proj(key).reshape(batch, source, self.n_heads, -1).transpose(1, 2)
        v = self.v_proj(value).reshape(batch, source, self.n_heads, -1).transpose(1, 2)
        scores = torch.matmul(q, k.transpose(-1, -2)) * (1.0 / math.sqrt(q.shape[-1]))
        if mask is not None:
            scores = scores.masked_fill(mask, float("-inf"))
        weights = self.dropout(torch.softmax(scores, dim=-1))
        out = torch.matmul(weights, v).transpose(1, 2).reshape(batch, length, -1)
        return self.out_proj(out)


class FeedForward(nn.Module):
    """Position-wise FFN (the papers' kernel-1 convolutions, written as the equivalent Linear layers)."""

    def __init__(self, d_model: int, d_ff: int, dropout: float) -> None:
        super().__init__()
        self.linear1 = nn.Linear(d_model, d_ff)
        self.linear2 = nn.Linear(d_ff, d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.linear2(self.dropout(F.gelu(self.linear1(x)))))


class CircularConv(nn.Module):
    """Kernel-3 convolution over time of [batch, time, channels] with circular padding, done by concatenation so
    it exports anywhere; no bias."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(c_in, c_out, kernel_size=3, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.transpose(1, 2)
        return self.conv(torch.cat([x[:, :, -1:], x, x[:, :, :1]], dim=2)).transpose(1, 2)


class TokenEmbedding(CircularConv):
    """The value embedding of Informer and its successors: a circular kernel-3 convolution, Kaiming-initialised."""

    def __init__(self, c_in: int, d_model: int) -> None:
        super().__init__(c_in, d_model)
        nn.init.kaiming_normal_(self.conv.weight, mode="fan_in", nonlinearity="leaky_relu")


class EncoderLayer(nn.Module):
    """Post-norm Transformer encoder layer: self-attention, then the FFN, each added back and normalised."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float,
                 norm: Callable[[int], nn.Module] = nn.LayerNorm) -> None:
        super().__init__()
        self.attention = MultiHeadAttention(d_model, n_heads, dropout)
        self.ffn = FeedForward(d_model, d_ff, dropout)
        self.norm1 = norm(d_model)
        self.norm2 = norm(d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm1(x + self.dropout(self.attention(x, x, x)))
        return self.norm2(x + self.ffn(x))


def select_target(forecast: torch.Tensor, c_out: int, target_index: int) -> torch.Tensor:
    """[B, T, n_vars] -> [B, T, 1] of the target input when one output is forecast from several inputs (MS)."""
    n_vars = forecast.shape[2]
    if c_out == 1 and n_vars > 1:
        index = target_index % n_vars
        return forecast[:, :, index : index + 1]
    return forecast


def sinusoid_table(length: int, d_model: int) -> torch.Tensor:
    position = torch.arange(length, dtype=torch.float32).unsqueeze(1)
    div = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32) * (-math.log(10000.0) / d_model))
    table = torch.zeros(length, d_model)
    table[:, 0::2] = torch.sin(position * div)
    table[:, 1::2] = torch.cos(position * div)[:, : d_model // 2]
    return table


class CalendarEmbedding(nn.Module):
    """Linear projection of calendar features scaled to [-0.5, 0.5] (the papers' `timeF` embedding)."""

    def __init__(self, names: tuple[str, ...], d_model: int) -> None:
        super().__init__()
        self.register_buffer("scale", torch.tensor([1.0 / FEATURE_MAX[n] for n in names]), persistent=False)
        self.proj = nn.Linear(len(names), d_model, bias=False)

    def forward(self, calendar: torch.Tensor) -> torch.Tensor:
        return self.proj(calendar * self.scale - 0.5)


class ValueCalendarEmbedding(nn.Module):
    """Value + calendar embedding without positions (Autoformer, FEDformer: their delays and decomposition carry
    the order)."""

    def __init__(self, c_in: int, d_model: int, calendar: tuple[str, ...], dropout: float) -> None:
        super().__init__()
        self.value = TokenEmbedding(c_in, d_model)
        self.calendar = CalendarEmbedding(calendar, d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, calendar: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.value(x) + self.calendar(calendar))


class DataEmbedding(ValueCalendarEmbedding):
    """Value + sinusoidal position + calendar embedding, as in Informer and its successors."""

    def __init__(self, c_in: int, d_model: int, calendar: tuple[str, ...], dropout: float, max_len: int) -> None:
        super().__init__(c_in, d_model, calendar, dropout)
        self.register_buffer("position", sinusoid_table(max_len, d_model).unsqueeze(0), persistent=False)

    def forward(self, x: torch.Tensor, calendar: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.value(x) + self.position[:, : x.shape[1]] + self.calendar(calendar))
