"""Autoformer (Wu et al., NeurIPS 2021): a decomposition Transformer with Auto-Correlation instead of attention.

Every block splits its output into a seasonal part, which flows on, and a trend part (moving average, kernel
`moving_avg`), which the decoder accumulates through a kernel-3 circular projection and adds to its seasonal
forecast. Auto-Correlation scores each time delay tau by the circular correlation of queries and keys,
R(tau) = sum_t q[(t + tau) mod L] . k[t] (via FFT: irfft(rfft(Q) * conj(rfft(K)))), averaged over heads and
channels; it keeps the k = int(factor * ln L) best delays, softmaxes their scores and sums the values rolled by
each delay, out[t] = sum_i w_i v[(t + tau_i) mod L].

Delay selection, one definition per mode (both are in the paper; the official code trains with the first):
- training: the delays are shared by the batch (top-k of the batch-mean correlation), each sample softmaxes
  its own correlations at those delays;
- eval (and so every exported artifact): each sample picks its own top-k delays.

Deployment form (`use_deployment_form`, switched on by export): rfft/irfft and complex tensors do not export,
so R comes from the Gram matrix G = Q K^T, R(tau) = sum_t G[(t + tau) mod L, t] / width, read with one gather
by precomputable indices. That is L*L*width multiply-adds per sample, half of what real DFT matmuls with cos/sin
bases need (two forward DFTs of L*(L/2+1)*width each, times cos and sin), and it is exact rather than a second
rounding of the spectrum. Top-k is torch.topk (ONNX TopK, TFLite TOPK_V2); the rolls are one gather of the
values by (arange(L) + delay) mod L, which both forms use.

Where this deviates from the paper's code, and why:
- queries and keys have no bias: a bias adds the same amount to every delay's score (softmax and top-k ignore
  it), so it would be a parameter with no effect (the one exception, the key bias of a cross-correlation whose
  keys are zero-padded, is dropped too);
- the layer norm of the seasonal part ("my_Layernorm") has no bias, since subtracting the time mean removes it;
- the heads only group channels (for structured pruning): the correlation averages over heads and channels and
  every head uses the same delays, exactly as in the paper, so the grouping does not change the computation;
- with one output and several inputs (c_out == 1 < enc_in) the trend is that of input `target_index`, which is
  what the paper's code computes for its target column by broadcasting.

Presets: `paper` is the study's d_model 512, 8 heads, 2 + 1 layers, d_ff 2048, factor 3, moving_avg 24 (the
moving average handles even kernels), dropout 0.05; `small` is an eighth of the widths (d_model 64, 4 heads of
16, d_ff 256), same depth, factor, kernel and dropout.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from tsprune_edge.models.decomposition import SeasonalLayerNorm, SeriesDecomposition, decoder_init
from tsprune_edge.models.layers import CircularConv, ValueCalendarEmbedding
from tsprune_edge.models.registry import ForecastConfig, TrainSchedule, register_model


@dataclass
class AutoformerConfig(ForecastConfig):
    d_model: int = 512
    n_heads: int = 8
    e_layers: int = 2
    d_layers: int = 1
    d_ff: int = 2048
    factor: float = 3.0
    moving_avg: int = 24
    dropout: float = 0.05


def delay_count(length: int, factor: float) -> int:
    """k = int(factor * ln L), kept within [1, L]."""
    return max(1, min(length, int(factor * math.log(length))))


def correlation_fft(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """[B, L, D] x2 -> [B, L]: R(tau) averaged over channels, by FFT (the training form)."""
    spectrum = torch.fft.rfft(q, dim=1) * torch.conj(torch.fft.rfft(k, dim=1))
    return torch.fft.irfft(spectrum, n=q.shape[1], dim=1).mean(dim=-1)


def correlation_matmul(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """[B, L, D] x2 -> [B, L]: the same R(tau) as sums along the circular diagonals of Q K^T (deployment form)."""
    batch, length, width = q.shape
    gram = torch.matmul(q, k.transpose(1, 2)).reshape(batch, length * length)  # gram[s * L + t] = q_s . k_t
    steps = torch.arange(length, device=q.device)
    diagonals = ((steps[:, None] + steps[None, :]) % length) * length + steps[None, :]  # [tau, t]
    return gram[:, diagonals].sum(dim=-1) / width


def select_delays(corr: torch.Tensor, top: int, shared: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The delays [B, top] and their softmax weights, shared by the batch or chosen per sample."""
    if shared:
        delays = torch.topk(corr.mean(dim=0), top).indices.expand(corr.shape[0], top)
        scores = torch.gather(corr, 1, delays)
    else:
        scores, delays = torch.topk(corr, top, dim=-1)
    return delays, torch.softmax(scores, dim=-1)


def aggregate_delays(values: torch.Tensor, delays: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """out[b, t] = sum_i weights[b, i] * values[b, (t + delays[b, i]) mod L]: the weighted sum of the values
    rolled by each delay, written as one gather (torch.roll with a per-sample shift does not export)."""
    batch, length, width = values.shape
    steps = torch.arange(length, device=values.device)
    rows = (steps + delays[..., None]) % length + (torch.arange(batch, device=values.device) * length)[:, None, None]
    patterns = values.reshape(batch * length, width)[rows].reshape(batch, -1, length * width)  # [B, top, L*D]
    return torch.matmul(weights[:, None, :], patterns).reshape(batch, length, width)


class AutoCorrelationLayer(nn.Module):
    """Projections around Auto-Correlation; q/k/v/out are separate Linear layers for structured pruning."""

    def __init__(self, d_model: int, n_heads: int, factor: float) -> None:
        super().__init__()
        width = (d_model // n_heads) * n_heads
        self.n_heads = n_heads
        self.factor = factor
        self.q_proj = nn.Linear(d_model, width, bias=False)
        self.k_proj = nn.Linear(d_model, width, bias=False)
        self.v_proj = nn.Linear(d_model, width)
        self.out_proj = nn.Linear(width, d_model)
        self.use_deployment_form = False

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        length, source = query.shape[1], key.shape[1]
        q, k, v = self.q_proj(query), self.k_proj(key), self.v_proj(value)
        if source < length:  # a shorter source (cross-correlation) is padded with zeros, a longer one cut
            k, v = F.pad(k, (0, 0, 0, length - source)), F.pad(v, (0, 0, 0, length - source))
        else:
            k, v = k[:, :length], v[:, :length]
        corr = correlation_matmul(q, k) if self.use_deployment_form else correlation_fft(q, k)
        delays, weights = select_delays(corr, delay_count(length, self.factor), shared=self.training)
        return self.out_proj(aggregate_delays(v, delays, weights))


class FeedForward(nn.Module):
    """The paper's bias-free kernel-1 convolutions as Linear layers, GELU between."""

    def __init__(self, d_model: int, d_ff: int, dropout: float) -> None:
        super().__init__()
        self.linear1 = nn.Linear(d_model, d_ff, bias=False)
        self.linear2 = nn.Linear(d_ff, d_model, bias=False)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.linear2(self.dropout(F.gelu(self.linear1(x)))))


class EncoderLayer(nn.Module):
    def __init__(self, cfg: AutoformerConfig) -> None:
        super().__init__()
        self.attention = AutoCorrelationLayer(cfg.d_model, cfg.n_heads, cfg.factor)
        self.ffn = FeedForward(cfg.d_model, cfg.d_ff, cfg.dropout)
        self.decomposition = SeriesDecomposition(cfg.moving_avg)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, _ = self.decomposition(x + self.dropout(self.attention(x, x, x)))
        x, _ = self.decomposition(x + self.ffn(x))
        return x


class DecoderLayer(nn.Module):
    """Returns the seasonal part and this layer's trend (three decompositions) projected to c_out."""

    def __init__(self, cfg: AutoformerConfig) -> None:
        super().__init__()
        self.self_attention = AutoCorrelationLayer(cfg.d_model, cfg.n_heads, cfg.factor)
        self.cross_attention = AutoCorrelationLayer(cfg.d_model, cfg.n_heads, cfg.factor)
        self.ffn = FeedForward(cfg.d_model, cfg.d_ff, cfg.dropout)
        self.decomposition = SeriesDecomposition(cfg.moving_avg)
        self.trend_projection = CircularConv(cfg.d_model, cfg.c_out)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, trend1 = self.decomposition(x + self.dropout(self.self_attention(x, x, x)))
        x, trend2 = self.decomposition(x + self.dropout(self.cross_attention(x, memory, memory)))
        x, trend3 = self.decomposition(x + self.ffn(x))
        return x, self.trend_projection(trend1 + trend2 + trend3)


_PAPER = dict(seq_len=96, label_len=48, d_model=512, n_heads=8, e_layers=2, d_layers=1, d_ff=2048, factor=3,
              moving_avg=24, dropout=0.05)
# CPU-sized: an eighth of the paper's widths, same depth, delays and decomposition; head width 16.
_SMALL = dict(seq_len=96, label_len=48, d_model=64, n_heads=4, e_layers=2, d_layers=1, d_ff=256, factor=3,
              moving_avg=24, dropout=0.05)


@register_model("autoformer", AutoformerConfig, {"paper": _PAPER, "small": _SMALL},
                TrainSchedule(lr=1e-4, batch_size=32, max_epochs=10, lr_decay="halve"),
                "Autoformer (Wu et al. 2021): series decomposition blocks, FFT Auto-Correlation, trend accumulation")
class Autoformer(nn.Module):
    def __init__(self, cfg: AutoformerConfig) -> None:
        super().__init__()
        if cfg.c_out not in (cfg.enc_in, 1):
            raise ValueError(f"c_out {cfg.c_out} must equal enc_in {cfg.enc_in} or be 1")
        self.decomposition = SeriesDecomposition(cfg.moving_avg)
        self.enc_embedding = ValueCalendarEmbedding(cfg.enc_in, cfg.d_model, cfg.calendar_features, cfg.dropout)
        self.dec_embedding = ValueCalendarEmbedding(cfg.enc_in, cfg.d_model, cfg.calendar_features, cfg.dropout)
        self.encoder = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.e_layers))
        self.encoder_norm = SeasonalLayerNorm(cfg.d_model)
        self.decoder = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.d_layers))
        self.decoder_norm = SeasonalLayerNorm(cfg.d_model)
        self.projection = nn.Linear(cfg.d_model, cfg.c_out)
        self.seq_len, self.label_len, self.pred_len = cfg.seq_len, cfg.label_len, cfg.pred_len
        self.target = cfg.target_index % cfg.enc_in if cfg.c_out < cfg.enc_in else None

    def decoder_init(self, history: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return decoder_init(self.decomposition, history, self.label_len, self.pred_len, self.target)

    def forward(self, history: torch.Tensor, calendar: torch.Tensor) -> torch.Tensor:
        seasonal, trend = self.decoder_init(history)
        memory = self.enc_embedding(history, calendar[:, : self.seq_len])
        for layer in self.encoder:
            memory = layer(memory)
        memory = self.encoder_norm(memory)
        x = self.dec_embedding(seasonal, calendar[:, self.seq_len - self.label_len :])
        for layer in self.decoder:
            x, residual_trend = layer(x, memory)
            trend = trend + residual_trend
        forecast = trend + self.projection(self.decoder_norm(x))
        return forecast[:, -self.pred_len :]
