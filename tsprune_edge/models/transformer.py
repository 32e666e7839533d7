"""The vanilla encoder-decoder Transformer as the pruning study used it (Vaswani et al. 2017, in the
long-term forecasting setting of Informer/Autoformer): token convolution + position + calendar embedding,
full attention, post-norm layers with GELU, and a decoder fed the last `label_len` inputs plus zeros.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from tsprune_edge.models.layers import DataEmbedding, EncoderLayer, FeedForward, MultiHeadAttention
from tsprune_edge.models.registry import ForecastConfig, TrainSchedule, register_model


@dataclass
class TransformerConfig(ForecastConfig):
    d_model: int = 512
    n_heads: int = 8
    e_layers: int = 2
    d_layers: int = 1
    d_ff: int = 2048
    dropout: float = 0.05


class DecoderLayer(nn.Module):
    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.self_attention = MultiHeadAttention(cfg.d_model, cfg.n_heads, cfg.dropout)
        self.cross_attention = MultiHeadAttention(cfg.d_model, cfg.n_heads, cfg.dropout)
        self.ffn = FeedForward(cfg.d_model, cfg.d_ff, cfg.dropout)
        self.norm1 = nn.LayerNorm(cfg.d_model)
        self.norm2 = nn.LayerNorm(cfg.d_model)
        self.norm3 = nn.LayerNorm(cfg.d_model)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, memory: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.norm1(x + self.dropout(self.self_attention(x, x, x, mask)))
        x = self.norm2(x + self.dropout(self.cross_attention(x, memory, memory)))
        return self.norm3(x + self.ffn(x))


_PAPER = dict(seq_len=96, label_len=48, d_model=512, n_heads=8, e_layers=2, d_layers=1, d_ff=2048, dropout=0.05)
# CPU-sized: an eighth of the paper's widths, same depth; head width 16, every width a multiple of 8.
_SMALL = dict(seq_len=96, label_len=48, d_model=64, n_heads=4, e_layers=2, d_layers=1, d_ff=256, dropout=0.05)


@register_model("transformer", TransformerConfig, {"paper": _PAPER, "small": _SMALL},
                TrainSchedule(lr=1e-4, batch_size=32, max_epochs=10, lr_decay="halve"),
                "vanilla encoder-decoder Transformer (Vaswani et al. 2017), full attention")
class Transformer(nn.Module):
    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        dec_len = cfg.label_len + cfg.pred_len
        self.enc_embedding = DataEmbedding(cfg.enc_in, cfg.d_model, cfg.calendar_features, cfg.dropout, cfg.seq_len)
        self.dec_embedding = DataEmbedding(cfg.enc_in, cfg.d_model, cfg.calendar_features, cfg.dropout, dec_len)
        self.encoder = nn.ModuleList(EncoderLayer(cfg.d_model, cfg.n_heads, cfg.d_ff, cfg.dropout)
                                     for _ in range(cfg.e_layers))
        self.encoder_norm = nn.LayerNorm(cfg.d_model)
        self.decoder = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.d_layers))
        self.decoder_norm = nn.LayerNorm(cfg.d_model)
        self.projection = nn.Linear(cfg.d_model, cfg.c_out)
        self.register_buffer("causal_mask", torch.ones(dec_len, dec_len, dtype=torch.bool).triu(1), persistent=False)
        self.seq_len, self.label_len, self.pred_len = cfg.seq_len, cfg.label_len, cfg.pred_len

    def forward(self, history: torch.Tensor, calendar: torch.Tensor) -> torch.Tensor:
        start = self.seq_len - self.label_len
        zeros = history.new_zeros(history.shape[0], self.pred_len, history.shape[2])
        dec_in = torch.cat([history[:, start:], zeros], dim=1)
        memory = self.enc_embedding(history, calendar[:, : self.seq_len])
        for layer in self.encoder:
            memory = layer(memory)
        memory = self.encoder_norm(memory)
        x = self.dec_embedding(dec_in, calendar[:, start:])
        for layer in self.decoder:
            x = layer(x, memory, self.causal_mask)
        x = self.projection(self.decoder_norm(x))
        return x[:, -self.pred_len:]
