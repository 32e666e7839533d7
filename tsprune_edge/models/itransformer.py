"""iTransformer (Liu et al., ICLR 2024): the Transformer turned on its side. Each variate's whole lookback
series is one token (Linear(seq_len, d_model)), so attention mixes variates rather than time steps and the
feed-forward network learns each series' temporal representation; a per-token Linear(d_model, pred_len)
reads the forecast off. As in the official model, the history's calendar features are appended as extra
variate tokens (each feature's series one token, scaled to [-0.5, 0.5] as CalendarEmbedding does) and
dropped before the output; inputs are normalised per variate over time (mean and std, no affine) and the
forecast is restored to their scale.

The pruning study did not include iTransformer. The `paper` preset is therefore the iTransformer authors'
own ETTh1 setting at pred_len 96 (thuml/iTransformer scripts/multivariate_forecasting/ETT/iTransformer_ETTh1.sh:
e_layers 2, d_model 256, d_ff 256; n_heads 8 and dropout 0.1 are run.py defaults). The `small` preset halves
the widths and keeps depth and head count (head width 16).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from tsprune_edge.data.calendar import FEATURE_MAX
from tsprune_edge.models.layers import EncoderLayer, select_target
from tsprune_edge.models.patchtst import RevIN
from tsprune_edge.models.registry import ForecastConfig, TrainSchedule, register_model


@dataclass
class ITransformerConfig(ForecastConfig):
    d_model: int = 256
    n_heads: int = 8
    e_layers: int = 2
    d_ff: int = 256
    dropout: float = 0.1
    use_norm: bool = True


_PAPER = dict(seq_len=96, label_len=48, d_model=256, n_heads=8, e_layers=2, d_ff=256, dropout=0.1)
# CPU-sized: half the authors' widths, same depth and head count; head width 16, widths multiples of 8.
_SMALL = dict(seq_len=96, label_len=48, d_model=128, n_heads=8, e_layers=2, d_ff=128, dropout=0.1)


@register_model("itransformer", ITransformerConfig, {"paper": _PAPER, "small": _SMALL},
                TrainSchedule(lr=1e-4, batch_size=32, max_epochs=10, lr_decay="halve"),
                "iTransformer (Liu et al. 2024): variates as tokens, attention across variates")
class ITransformer(nn.Module):
    def __init__(self, cfg: ITransformerConfig) -> None:
        super().__init__()
        self.seq_len, self.c_out, self.target_index = cfg.seq_len, cfg.c_out, cfg.target_index
        self.norm = RevIN(cfg.enc_in, affine=False) if cfg.use_norm else None
        scale = torch.tensor([1.0 / FEATURE_MAX[n] for n in cfg.calendar_features], dtype=torch.float32)
        self.register_buffer("calendar_scale", scale, persistent=False)
        self.embedding = nn.Linear(cfg.seq_len, cfg.d_model)
        self.dropout = nn.Dropout(cfg.dropout)
        self.encoder = nn.ModuleList(EncoderLayer(cfg.d_model, cfg.n_heads, cfg.d_ff, cfg.dropout)
                                     for _ in range(cfg.e_layers))
        self.encoder_norm = nn.LayerNorm(cfg.d_model)
        self.projector = nn.Linear(cfg.d_model, cfg.pred_len)

    def variate_series(self, history: torch.Tensor, calendar: torch.Tensor) -> torch.Tensor:
        """[B, enc_in + n_cal, seq_len]: the (normalised) data variates, then the history's calendar features."""
        marks = calendar[:, : self.seq_len] * self.calendar_scale - 0.5
        return torch.cat([history, marks], dim=2).transpose(1, 2)

    def forward(self, history: torch.Tensor, calendar: torch.Tensor) -> torch.Tensor:
        n_vars = history.shape[2]
        if self.norm is not None:
            history, mean, std = self.norm.normalise(history)
        tokens = self.dropout(self.embedding(self.variate_series(history, calendar)))  # [B, N + n_cal, D]
        for layer in self.encoder:
            tokens = layer(tokens)
        tokens = self.encoder_norm(tokens)
        forecast = self.projector(tokens[:, :n_vars]).transpose(1, 2)  # [B, pred_len, enc_in]
        if self.norm is not None:
            forecast = self.norm.restore(forecast, mean, std)
        return select_target(forecast, self.c_out, self.target_index)
