"""Crossformer (Zhang & Yan, ICLR 2023): a forecaster that models dependency across variables as well as
across time.

- Dimension-Segment-Wise (DSW) embedding: each variable's series is cut into segments of `seg_len` steps, each
  segment is embedded linearly, a learnable position vector per (variable, segment) is added, then LayerNorm.
  The window is first padded at the front to a multiple of `seg_len` by repeating its first value.
- Two-Stage Attention (TSA): a cross-time stage (self-attention among the segments of each variable) and a
  cross-dimension stage in which `factor` learnable routers per segment gather from all variables (routers as
  queries) and the variables read back from the routers, so the cost is linear in the number of variables.
- Hierarchical encoder-decoder: `e_layers` scale blocks, each after the first merging `win_size` adjacent
  segments into one; `e_layers + 1` decoder layers (one per encoder scale, the embedding included), each a TSA
  layer on learned position queries, cross-attention to its encoder scale and a linear head that predicts
  `seg_len` values per segment. The forecast is the sum of the predictions of all decoder layers.

Crossformer forecasts every input variable (c_out == enc_in); with one output (MS/S) it returns the forecast of
input `target_index`. It ignores the calendar input. Everything is Linear/LayerNorm/attention with static
reshapes, so it exports as is (no deployment form).

Presets: `paper` is the study's ETTh1 setting, the official defaults (d_model 256, d_ff 512, 4 heads, 3 scale
blocks, dropout 0.2, seg_len 6, win_size 2, 10 routers); `small` is a quarter of the widths (d_model 64, d_ff 128,
4 heads of width 16) with segments of 12 and two scale blocks, to fit a CPU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from tsprune_edge.models.layers import FeedForward, MultiHeadAttention, select_target
from tsprune_edge.models.registry import ForecastConfig, TrainSchedule, register_model


@dataclass
class CrossformerConfig(ForecastConfig):
    d_model: int = 256
    n_heads: int = 4
    e_layers: int = 3
    d_ff: int = 512
    dropout: float = 0.2
    seg_len: int = 6
    win_size: int = 2
    factor: int = 10  # routers per segment in the cross-dimension stage


def scale_segment_counts(cfg: CrossformerConfig) -> list[int]:
    """Segments per variable at the embedding and after each scale block (the first block does not merge)."""
    counts = [math.ceil(cfg.seq_len / cfg.seg_len)] * 2
    for _ in range(1, cfg.e_layers):
        counts.append(math.ceil(counts[-1] / cfg.win_size))
    return counts


class TwoStageAttention(nn.Module):
    """TSA layer on [batch, variables, segments, d_model]: cross-time stage, then cross-dimension via routers."""

    def __init__(self, cfg: CrossformerConfig, n_segments: int) -> None:
        super().__init__()
        self.time_attention = MultiHeadAttention(cfg.d_model, cfg.n_heads, cfg.dropout)
        self.dim_sender = MultiHeadAttention(cfg.d_model, cfg.n_heads, cfg.dropout)
        self.dim_receiver = MultiHeadAttention(cfg.d_model, cfg.n_heads, cfg.dropout)
        self.router = nn.Parameter(torch.randn(n_segments, cfg.factor, cfg.d_model))
        # The official MLPs have no dropout inside; the layer's dropout is applied to their output.
        self.time_ffn = FeedForward(cfg.d_model, cfg.d_ff, 0.0)
        self.dim_ffn = FeedForward(cfg.d_model, cfg.d_ff, 0.0)
        self.norm1 = nn.LayerNorm(cfg.d_model)
        self.norm2 = nn.LayerNorm(cfg.d_model)
        self.norm3 = nn.LayerNorm(cfg.d_model)
        self.norm4 = nn.LayerNorm(cfg.d_model)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, n_vars, n_segments, d_model = x.shape
        # Cross-time stage: each variable's segments attend to each other.
        time = x.reshape(batch * n_vars, n_segments, d_model)
        time = self.norm1(time + self.dropout(self.time_attention(time, time, time)))
        time = self.norm2(time + self.dropout(self.time_ffn(time)))
        # Cross-dimension stage: per segment, routers gather from all variables, then variables read the routers.
        dims = time.reshape(batch, n_vars, n_segments, d_model).transpose(1, 2)
        dims = dims.reshape(batch * n_segments, n_vars, d_model)
        # the routers' own width: after width pruning it may differ from the stream's (prune/width.py)
        routers = self.router.unsqueeze(0).expand(batch, -1, -1, -1).reshape(batch * n_segments, -1,
                                                                          self.router.shape[-1])
        buffer = self.dim_sender(routers, dims, dims)
        dims = self.norm3(dims + self.dropout(self.dim_receiver(dims, buffer, buffer)))
        dims = self.norm4(dims + self.dropout(self.dim_ffn(dims)))
        return dims.reshape(batch, n_segments, n_vars, d_model).transpose(1, 2)


class SegmentMerging(nn.Module):
    """Concatenates `win_size` adjacent segments (repeating the last ones if the count is not a multiple),
    then LayerNorm and a linear projection back to d_model: a coarser time scale."""

    def __init__(self, d_model: int, win_size: int) -> None:
        super().__init__()
        self.win_size = win_size
        self.norm = nn.LayerNorm(win_size * d_model)
        self.projection = nn.Linear(win_size * d_model, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, n_vars, n_segments, d_model = x.shape
        pad = -n_segments % self.win_size
        if pad:
            x = torch.cat([x, x[:, :, -pad:]], dim=2)
        # Segments w*j .. w*j + w-1 lie next to each other in memory, so one reshape concatenates them.
        x = x.reshape(batch, n_vars, (n_segments + pad) // self.win_size, self.win_size * d_model)
        return self.projection(self.norm(x))


class ScaleBlock(nn.Module):
    def __init__(self, cfg: CrossformerConfig, n_segments: int, merge: bool) -> None:
        super().__init__()
        self.merge = SegmentMerging(cfg.d_model, cfg.win_size) if merge else None
        self.tsa = TwoStageAttention(cfg, n_segments)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.merge is not None:
            x = self.merge(x)
        return self.tsa(x)


class DecoderLayer(nn.Module):
    """TSA on the decoder queries, cross-attention to one encoder scale, and a per-segment linear forecast."""

    def __init__(self, cfg: CrossformerConfig, n_out_segments: int) -> None:
        super().__init__()
        self.self_attention = TwoStageAttention(cfg, n_out_segments)
        self.cross_attention = MultiHeadAttention(cfg.d_model, cfg.n_heads, cfg.dropout)
        self.ffn = FeedForward(cfg.d_model, cfg.d_model, 0.0)
        self.norm1 = nn.LayerNorm(cfg.d_model)
        self.norm2 = nn.LayerNorm(cfg.d_model)
        self.dropout = nn.Dropout(cfg.dropout)
        self.prediction = nn.Linear(cfg.d_model, cfg.seg_len)

    def forward(self, x: torch.Tensor, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x [B, D, M, d], memory [B, D, N, d] -> (next decoder state [B, D, M, d], forecast [B, D, M, seg_len])."""
        x = self.self_attention(x)
        batch, n_vars, n_segments, d_model = x.shape
        queries = x.reshape(batch * n_vars, n_segments, d_model)
        keys = memory.reshape(batch * n_vars, memory.shape[2], d_model)
        queries = self.norm1(queries + self.dropout(self.cross_attention(queries, keys, keys)))
        out = self.norm2(queries + self.ffn(queries)).reshape(batch, n_vars, n_segments, d_model)
        return out, self.prediction(out)


_PAPER = dict(seq_len=96, label_len=48, d_model=256, n_heads=4, e_layers=3, d_ff=512, dropout=0.2, seg_len=6,
              win_size=2, factor=10)
# CPU-sized: a quarter of the widths, segments of 12 and two scale blocks (2.7x cheaper a step than seg_len 6
# with three blocks at these widths; the token count, not the width, dominates Crossformer's cost).
_SMALL = dict(seq_len=96, label_len=48, d_model=64, n_heads=4, e_layers=2, d_ff=128, dropout=0.2, seg_len=12,
              win_size=2, factor=10)


# Official ETTh1 recipe (scripts/ETTh1.sh, main_crossformer.py): Adam, lr 1e-4, batch 32, 20 epochs, patience 3.
# Its lradj "type1" halves the lr after epochs 2, 4, ..., 10 (every second epoch, down to lr/32); "halve"
# (every epoch) is the nearest schedule the registry offers.
@register_model("crossformer", CrossformerConfig, {"paper": _PAPER, "small": _SMALL},
                TrainSchedule(lr=1e-4, batch_size=32, max_epochs=20, lr_decay="halve"),
                "Crossformer (Zhang & Yan 2023): segment embedding, two-stage attention, hierarchical enc-dec")
class Crossformer(nn.Module):
    # why `--dims width` is refused (prune/width.py)
    width_pruning_refused = ("its segment merging reads win_size segments' channels flattened together and its "
                             "router streams have no norm; torch-pruning 1.6.1's DepGraph does not shrink them "
                             "consistently yet")

    def __init__(self, cfg: CrossformerConfig) -> None:
        super().__init__()
        if cfg.c_out not in (cfg.enc_in, 1):
            raise ValueError(f"Crossformer forecasts every input: c_out must be enc_in ({cfg.enc_in}) or 1, "
                             f"not {cfg.c_out}")
        self.seg_len, self.pred_len = cfg.seg_len, cfg.pred_len
        self.c_out, self.target_index = cfg.c_out, cfg.target_index
        self.scale_segments = scale_segment_counts(cfg)
        self.front_pad = self.scale_segments[0] * cfg.seg_len - cfg.seq_len
        n_out_segments = math.ceil(cfg.pred_len / cfg.seg_len)
        self.segment_embedding = nn.Linear(cfg.seg_len, cfg.d_model)
        self.enc_position = nn.Parameter(torch.randn(cfg.enc_in, self.scale_segments[0], cfg.d_model))
        self.embedding_norm = nn.LayerNorm(cfg.d_model)
        self.encoder = nn.ModuleList(ScaleBlock(cfg, n, merge=i > 0)
                                     for i, n in enumerate(self.scale_segments[1:]))
        self.dec_position = nn.Parameter(torch.randn(cfg.enc_in, n_out_segments, cfg.d_model))
        self.decoder = nn.ModuleList(DecoderLayer(cfg, n_out_segments) for _ in self.scale_segments)

    def pad_history(self, history: torch.Tensor) -> torch.Tensor:
        """[B, L, D] -> [B, L_pad, D], L_pad a multiple of seg_len, by repeating the first step at the front."""
        if not self.front_pad:
            return history
        return torch.cat([history[:, :1].expand(-1, self.front_pad, -1), history], dim=1)

    def segments(self, history: torch.Tensor) -> torch.Tensor:
        """[B, L, D] -> [B, D, n_segments, seg_len]: each variable's padded series cut into segments."""
        x = self.pad_history(history).transpose(1, 2)
        return x.reshape(x.shape[0], x.shape[1], -1, self.seg_len)

    def embed(self, history: torch.Tensor) -> torch.Tensor:
        """DSW embedding: [B, L, D] -> [B, D, n_segments, d_model]."""
        return self.embedding_norm(self.segment_embedding(self.segments(history)) + self.enc_position)

    def encode(self, history: torch.Tensor) -> list[torch.Tensor]:
        """The embedding and the output of every scale block, finest first."""
        scales = [self.embed(history)]
        for block in self.encoder:
            scales.append(block(scales[-1]))
        return scales

    def forward(self, history: torch.Tensor, calendar: torch.Tensor) -> torch.Tensor:
        scales = self.encode(history)
        batch, n_vars = history.shape[0], history.shape[2]
        x = self.dec_position.unsqueeze(0).expand(batch, -1, -1, -1)
        predictions = []
        for layer, memory in zip(self.decoder, scales, strict=True):
            x, prediction = layer(x, memory)
            predictions.append(prediction)
        forecast = sum(predictions[1:], predictions[0])  # [B, D, out_segments, seg_len], summed over scales
        forecast = forecast.reshape(batch, n_vars, -1).transpose(1, 2)[:, : self.pred_len]  # [B, pred_len, D]
        return select_target(forecast, self.c_out, self.target_index)
