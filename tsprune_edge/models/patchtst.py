"""PatchTST (Nie et al., ICLR 2023): each variable on its own (channel independence), cut into overlapping
patches that become the tokens of a Transformer encoder with batch norm, then a flatten + linear head;
RevIN normalises each input window and restores the scale of the forecast.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from tsprune_edge.models.layers import EncoderLayer, select_target
from tsprune_edge.models.registry import ForecastConfig, TrainSchedule, register_model


@dataclass
class PatchTSTConfig(ForecastConfig):
    d_model: int = 128
    n_heads: int = 16
    e_layers: int = 3
    d_ff: int = 256
    dropout: float = 0.2
    head_dropout: float = 0.0
    patch_len: int = 16
    stride: int = 8
    revin_affine: bool = True


class RevIN(nn.Module):
    """Reversible instance normalisation (Kim et al., ICLR 2022) over the time axis of [B, L, C]."""

    def __init__(self, n_vars: int, affine: bool, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(n_vars)) if affine else None
        self.bias = nn.Parameter(torch.zeros(n_vars)) if affine else None

    def normalise(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mean = x.mean(dim=1, keepdim=True)
        std = torch.sqrt(((x - mean) ** 2).mean(dim=1, keepdim=True) + self.eps)
        x = (x - mean) / std
        if self.weight is not None:
            x = x * self.weight + self.bias
        return x, mean, std

    def restore(self, x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
        if self.weight is not None:
            x = (x - self.bias) / (self.weight + self.eps * self.eps)
        return x * std + mean


class BatchNormTokens(nn.BatchNorm1d):
    """Batch norm over the feature axis of [batch, tokens, features]."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.transpose(1, 2)).transpose(1, 2)


def patch_count(cfg: PatchTSTConfig) -> int:
    """Patches after padding the end of the window with `stride` copies of its last value."""
    return (cfg.seq_len - cfg.patch_len) // cfg.stride + 2


_PAPER = dict(seq_len=96, label_len=48, d_model=512, n_heads=8, e_layers=2, d_ff=2048, dropout=0.05)
# CPU-sized, close to the PatchTST authors' own ETTh1 setting (d_model 16, 3 layers), widened to multiples of 8.
_SMALL = dict(seq_len=96, label_len=48, d_model=64, n_heads=4, e_layers=2, d_ff=128, dropout=0.3, head_dropout=0.0)


@register_model("patchtst", PatchTSTConfig, {"paper": _PAPER, "small": _SMALL},
                TrainSchedule(lr=1e-4, batch_size=128, max_epochs=100, lr_decay="hold3"),
                "PatchTST (Nie et al. 2023): patches as tokens, channel independence, RevIN")
class PatchTST(nn.Module):
    # reads [patches, d_model] flattened patch-major: width pruning slices its columns by hand (prune/width.py)
    token_major_readers = ("head",)

    def __init__(self, cfg: PatchTSTConfig) -> None:
        super().__init__()
        if cfg.seq_len < cfg.patch_len:
            raise ValueError(f"seq_len {cfg.seq_len} is shorter than patch_len {cfg.patch_len}")
        self.n_patches = patch_count(cfg)
        self.patch_len, self.stride = cfg.patch_len, cfg.stride
        self.pred_len, self.c_out, self.target_index = cfg.pred_len, cfg.c_out, cfg.target_index
        self.revin = RevIN(cfg.enc_in, cfg.revin_affine)
        self.patch_embedding = nn.Linear(cfg.patch_len, cfg.d_model)
        self.position = nn.Parameter(torch.empty(self.n_patches, cfg.d_model).uniform_(-0.02, 0.02))
        self.dropout = nn.Dropout(cfg.dropout)
        self.encoder = nn.ModuleList(EncoderLayer(cfg.d_model, cfg.n_heads, cfg.d_ff, cfg.dropout, BatchNormTokens)
                                     for _ in range(cfg.e_layers))
        self.head = nn.Linear(cfg.d_model * self.n_patches, cfg.pred_len)
        self.head_dropout = nn.Dropout(cfg.head_dropout)

    def patches(self, x: torch.Tensor) -> torch.Tensor:
        """[B, C, L] -> [B, C, n_patches, patch_len] with static slices (exports where `unfold` may not)."""
        x = torch.cat([x, x[:, :, -1:].expand(-1, -1, self.stride)], dim=2)
        starts = range(0, self.n_patches * self.stride, self.stride)
        return torch.stack([x[:, :, s : s + self.patch_len] for s in starts], dim=2)

    def forward(self, history: torch.Tensor, calendar: torch.Tensor) -> torch.Tensor:
        x, mean, std = self.revin.normalise(history)
        batch, _, n_vars = x.shape
        tokens = self.patch_embedding(self.patches(x.transpose(1, 2)))  # [B, C, N, D]
        tokens = self.dropout(tokens.reshape(batch * n_vars, self.n_patches, -1) + self.position)
        for layer in self.encoder:
            tokens = layer(tokens)
        forecast = self.head_dropout(self.head(tokens.reshape(batch, n_vars, -1)))  # [B, C, pred_len]
        forecast = self.revin.restore(forecast.transpose(1, 2), mean, std)
        return select_target(forecast, self.c_out, self.target_index)
