"""Informer (Zhou et al., AAAI 2021): the encoder-decoder Transformer for long sequences with ProbSparse
self-attention, self-attention distilling between encoder layers and a generative decoder fed the last
`label_len` inputs plus zeros, which forecasts the whole horizon in one pass.

ProbSparse: each query's sparsity M(q, K) = max - mean of its scores against U = c*ceil(ln L) sampled keys;
only the u = c*ceil(ln L) queries with the largest M attend, the lazy ones take the mean of V (the encoder)
or its cumulative sum (the decoder's masked self-attention). Cross-attention is full attention.

Sampling: training draws fresh key samples each step; eval mode and the deployment form use indices fixed at
construction from a seeded generator (buffer `sample_index`), so eval is deterministic and torch, ONNX and
TFLite see the same samples. The deployment form writes the selection of the active queries and the scatter
of their results as one-hot matrix products, because litert-torch turns the index scatter into a
STABLEHLO_SCATTER op rather than a classic TFLite builtin (the top-k itself converts to TOPK_V2).

Where this differs from the authors' code: the sparsity divides by the number of sampled keys (the mean
the paper defines; the code divides the sampled sum by L_K); the distilling convolution pads one step on
each side, so a layer halves the length exactly (the code's padding of 2 gives 49 from 96); its convolution
has no bias (batch norm follows); attention dropout applies to the active queries' weights; the decoder's
"mix" reshape of heads is left out. Presets: `paper` = the Informer defaults (d_model 512, 8 heads, 2+1
layers, d_ff 2048, dropout 0.05, distilling on) with factor c = 3 as the pruning study ran the FEDformer
family (the Informer authors' code defaults to 5); `small` = an eighth
of the widths (d_model 64, 4 heads of width 16, d_ff 256), same depth and factor.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from tsprune_edge.models.layers import DataEmbedding, FeedForward, MultiHeadAttention, TokenEmbedding
from tsprune_edge.models.registry import TrainSchedule, register_model
from tsprune_edge.models.transformer import TransformerConfig


@dataclass
class InformerConfig(TransformerConfig):
    factor: int = 5  # ProbSparse sampling factor c
    distil: bool = True


def active_count(factor: int, length: int) -> int:
    """u = c * ceil(ln L), at most L: active queries of a length-L sequence (and keys sampled per query)."""
    return min(factor * math.ceil(math.log(length)), length)


def future(query_positions: torch.Tensor, length: int) -> torch.Tensor:
    """Bool [..., n, length]: True where a key comes after the query at that position (the causal mask)."""
    return torch.arange(length, device=query_positions.device) > query_positions.unsqueeze(-1)


class ProbSparseAttention(MultiHeadAttention):
    """ProbSparse self-attention over sequences of the `length` given at construction. When u >= length every
    query is active and this is plain (causal) full attention, so no samples are kept."""

    def __init__(self, d_model: int, n_heads: int, dropout: float, factor: int, length: int, causal: bool,
                 seed: int) -> None:
        super().__init__(d_model, n_heads, dropout)
        self.n_active = active_count(factor, length)
        self.causal = causal
        self.use_deployment_form = False
        sample = None
        if self.n_active < length:
            generator = torch.Generator().manual_seed(seed)
            sample = torch.randint(length, (length, self.n_active), generator=generator)
        self.register_buffer("sample_index", sample)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Self-attention of x [B, L, d_model] (ProbSparse is only used as self-attention)."""
        batch, length, _ = x.shape
        if self.sample_index is None:
            mask = future(torch.arange(length, device=x.device), length) if self.causal else None
            return super().forward(x, x, x, mask)
        q, k, v = (proj(x).reshape(batch, length, self.n_heads, -1).transpose(1, 2)
                   for proj in (self.q_proj, self.k_proj, self.v_proj))
        top = self.active_queries(q, k)  # [B, H, u]
        if self.use_deployment_form:
            select = (top.unsqueeze(-1) == torch.arange(length, device=x.device)).to(q.dtype)  # [B, H, u, L]
            q_top = torch.matmul(select, q)
        else:
            q_top = torch.gather(q, 2, top.unsqueeze(-1).expand(-1, -1, -1, q.shape[-1]))
        scores = torch.matmul(q_top, k.transpose(-1, -2)) * (1.0 / math.sqrt(q.shape[-1]))
        if self.causal:
            scores = scores.masked_fill(future(top, length), float("-inf"))
        out_top = torch.matmul(self.dropout(torch.softmax(scores, dim=-1)), v)
        lazy = v.cumsum(dim=2) if self.causal else v.mean(dim=2, keepdim=True)
        if self.use_deployment_form:
            active = select.sum(dim=2).unsqueeze(-1)  # [B, H, L, 1]: 1 for active queries, else 0
            context = lazy * (1.0 - active) + torch.matmul(select.transpose(-1, -2), out_top)
        else:
            index = top.unsqueeze(-1).expand(-1, -1, -1, v.shape[-1])
            context = lazy.expand_as(v).scatter(2, index, out_top)
        return self.out_proj(context.transpose(1, 2).reshape(batch, length, -1))

    def active_queries(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """Indices [B, H, u] of the queries with the largest sampled sparsity measurement max - mean."""
        sample = self.sample_index
        if self.training and not self.use_deployment_form:
            sample = torch.randint(k.shape[2], sample.shape, device=sample.device)
        q, k = q.detach(), k.detach()  # the selection is not differentiable: keep no graph for it
        sampled = (q.unsqueeze(3) * k[:, :, sample]).sum(dim=-1)  # [B, H, L, U]
        sparsity = sampled.amax(dim=-1) - sampled.mean(dim=-1)
        return sparsity.topk(self.n_active, dim=-1).indices


class Distilling(nn.Module):
    """Self-attention distilling: circular kernel-3 convolution, batch norm, ELU, max-pool with stride 2,
    which halves the sequence (rounding up) for the next encoder layer."""

    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.conv = TokenEmbedding(d_model, d_model)  # the circular convolution; no bias, batch norm follows
        self.norm = nn.BatchNorm1d(d_model)
        self.pool = nn.MaxPool1d(kernel_size=3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.elu(self.norm(self.conv(x).transpose(1, 2)))
        return self.pool(x).transpose(1, 2)


class EncoderLayer(nn.Module):
    def __init__(self, cfg: InformerConfig, length: int, seed: int) -> None:
        super().__init__()
        self.attention = ProbSparseAttention(cfg.d_model, cfg.n_heads, cfg.dropout, cfg.factor, length,
                                             causal=False, seed=seed)
        self.ffn = FeedForward(cfg.d_model, cfg.d_ff, cfg.dropout)
        self.norm1 = nn.LayerNorm(cfg.d_model)
        self.norm2 = nn.LayerNorm(cfg.d_model)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm1(x + self.dropout(self.attention(x)))
        return self.norm2(x + self.ffn(x))


class DecoderLayer(nn.Module):
    def __init__(self, cfg: InformerConfig, length: int, seed: int) -> None:
        super().__init__()
        self.self_attention = ProbSparseAttention(cfg.d_model, cfg.n_heads, cfg.dropout, cfg.factor, length,
                                                  causal=True, seed=seed)
        self.cross_attention = MultiHeadAttention(cfg.d_model, cfg.n_heads, cfg.dropout)
        self.ffn = FeedForward(cfg.d_model, cfg.d_ff, cfg.dropout)
        self.norm1 = nn.LayerNorm(cfg.d_model)
        self.norm2 = nn.LayerNorm(cfg.d_model)
        self.norm3 = nn.LayerNorm(cfg.d_model)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        x = self.norm1(x + self.dropout(self.self_attention(x)))
        x = self.norm2(x + self.dropout(self.cross_attention(x, memory, memory)))
        return self.norm3(x + self.ffn(x))


def encoder_lengths(cfg: InformerConfig) -> list[int]:
    """Sequence length seen by each encoder layer: distilling halves it (rounding up) between layers."""
    lengths = [cfg.seq_len]
    for _ in range(cfg.e_layers - 1):
        lengths.append(-(-lengths[-1] // 2) if cfg.distil else lengths[-1])
    return lengths


_PAPER = dict(seq_len=96, label_len=48, d_model=512, n_heads=8, e_layers=2, d_layers=1, d_ff=2048, factor=3,
              dropout=0.05, distil=True)
_SMALL = dict(seq_len=96, label_len=48, d_model=64, n_heads=4, e_layers=2, d_layers=1, d_ff=256, factor=3,
              dropout=0.05, distil=True)


@register_model("informer", InformerConfig, {"paper": _PAPER, "small": _SMALL},
                TrainSchedule(lr=1e-4, batch_size=32, max_epochs=10, lr_decay="halve"),
                "Informer (Zhou et al. 2021): ProbSparse self-attention, distilling, generative decoder")
class Informer(nn.Module):
    def __init__(self, cfg: InformerConfig) -> None:
        super().__init__()
        dec_len = cfg.label_len + cfg.pred_len
        lengths = encoder_lengths(cfg)
        self.enc_embedding = DataEmbedding(cfg.enc_in, cfg.d_model, cfg.calendar_features, cfg.dropout, cfg.seq_len)
        self.dec_embedding = DataEmbedding(cfg.enc_in, cfg.d_model, cfg.calendar_features, cfg.dropout, dec_len)
        # Each ProbSparse layer gets its own seed, so layers of equal length sample different keys.
        self.encoder = nn.ModuleList(EncoderLayer(cfg, length, seed) for seed, length in enumerate(lengths))
        self.distilling = nn.ModuleList(Distilling(cfg.d_model) for _ in lengths[1:] if cfg.distil)
        self.encoder_norm = nn.LayerNorm(cfg.d_model)
        self.decoder = nn.ModuleList(DecoderLayer(cfg, dec_len, len(lengths) + i) for i in range(cfg.d_layers))
        self.decoder_norm = nn.LayerNorm(cfg.d_model)
        self.projection = nn.Linear(cfg.d_model, cfg.c_out)
        self.seq_len, self.label_len, self.pred_len = cfg.seq_len, cfg.label_len, cfg.pred_len

    def forward(self, history: torch.Tensor, calendar: torch.Tensor) -> torch.Tensor:
        start = self.seq_len - self.label_len
        zeros = history.new_zeros(history.shape[0], self.pred_len, history.shape[2])
        dec_in = torch.cat([history[:, start:], zeros], dim=1)
        memory = self.enc_embedding(history, calendar[:, : self.seq_len])
        for i, layer in enumerate(self.encoder):
            memory = layer(memory)
            if i < len(self.distilling):
                memory = self.distilling[i](memory)
        memory = self.encoder_norm(memory)
        x = self.dec_embedding(dec_in, calendar[:, start:])
        for layer in self.decoder:
            x = layer(x, memory)
        x = self.projection(self.decoder_norm(x))
        return x[:, -self.pred_len:]
