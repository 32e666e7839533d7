"""FEDformer, Fourier version (Zhou et al., ICML 2022): Autoformer's decomposition architecture with attention
done in the frequency domain on a fixed random subset of Fourier modes.

- Embedding: token convolution + calendar, no position (the decomposition carries the order).
- Decomposition: `moving_avg` is a kernel or a list of kernels. The official runs use the list [24]; a
  one-kernel mixture has softmax weight 1, equals a plain moving average and its gate never gets a gradient,
  so one kernel builds `SeriesDecomposition` and several build `MixtureDecomposition` (the paper's MOEDecomp).
- FEB-f (self-attention's place): rfft of the query projection over time, keep `modes` bins, multiply each by
  learnable complex weights [heads, in/heads, out/heads, modes], irfft. It reads only the query, so it has no
  key/value projections (they would get no gradient).
- FEA-f (cross-attention): rfft of q, k and v at their modes, scores tanh(Q K^T) (complex tanh, no conjugate,
  as in the paper and the official code), times V's modes, then complex weights, then irfft, then the official
  code's factor 1 / d_model^2 (not in the paper). Kept because complex tanh is ill-conditioned at the sizes the
  scores reach (|Q K^T| up to ~4e3 on ETTh1 at initialisation, |tanh| up to ~65 beside its poles, where float32
  is ~0.02 off): the factor keeps that out of the forecast, so the FFT path, the deployment form and the
  exported runtimes agree. It also keeps the cross-attention's share of the forecast small, as in the official
  model.
- Modes: `modes` bins drawn once from the rfft's length // 2 + 1 bins with a generator seeded by `mode_seed`
  (all bins when there are fewer, e.g. the 49 of a 96-step encoder), stored as buffers. The checkpoint keeps
  them, and the DFT bases are rebuilt from them whenever a state dict is loaded.
- Complex weights are stored as two real parameters (`weight_real`, `weight_imag`), initialised as the official
  code does, uniform in [0, 1 / d_model^2).
- Deployment form (`use_deployment_form`): the DFT at the kept bins as matmuls with cos/sin bases [L, modes],
  complex products as real/imaginary pairs, and the inverse as matmuls with bases [modes, L] that carry
  irfft's 1/L, the doubling of the interior bins and the dropping of the imaginary part at DC and Nyquist.

Deviations from the official code (each a quirk of that code, not of the paper): FEB puts each mode's output
back at its own frequency (the official code writes the k-th kept bin's output to bin k); block outputs are
permuted back to [B, L, H*E] (the official code reshapes [B, H, E, L] memory directly); every layer has its own
FEB (the official encoder layers share one); FEA combines V's modes (the official code uses K's, the paper V's);
Nyquist may be drawn; feed-forward layers have biases (shared `FeedForward`); even kernels centre the moving
average one step later (shared `MovingAverage`). `factor` plays no part in the Fourier version: not a setting.

Presets: paper = d_model 512, 8 heads, 2 + 1 layers, d_ff 2048, moving_avg 24, modes 64, dropout 0.05.
small (CPU-sized) = d_model 64, 4 heads (width 16), d_ff 256, same depth, kernel and modes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from tsprune_edge.models.decomposition import (
    MixtureDecomposition,
    SeasonalLayerNorm,
    SeriesDecomposition,
    decoder_init,
)
from tsprune_edge.models.layers import CircularConv, FeedForward, ValueCalendarEmbedding
from tsprune_edge.models.registry import ForecastConfig, TrainSchedule, register_model


@dataclass
class FEDformerConfig(ForecastConfig):
    d_model: int = 512
    n_heads: int = 8
    e_layers: int = 2
    d_layers: int = 1
    d_ff: int = 2048
    moving_avg: int | Sequence[int] = (24,)
    modes: int = 64
    mode_seed: int = 2021
    dropout: float = 0.05


def decomposition(kernels: int | Sequence[int], channels: int) -> nn.Module:
    """Plain for one kernel, a mixture of experts for several (see the module docstring)."""
    kernels = (kernels,) if isinstance(kernels, int) else tuple(kernels)
    if len(kernels) == 1:
        return SeriesDecomposition(kernels[0])
    return MixtureDecomposition(kernels, channels)


def _rebuild_bases(modes: FourierModes, incompatible_keys: object) -> None:
    """A loaded state dict may bring other bins than the constructor drew."""
    modes.build_bases()


class FourierModes(nn.Module):
    """The rfft bins kept for series of one length, and the two ways of going to and from them:
    torch.fft for training, matmuls with real bases for export. Without a generator the lowest `modes` bins are
    kept (FITS's low-pass filter); with one, `modes` bins drawn at random (FEDformer)."""

    def __init__(self, length: int, modes: int, generator: torch.Generator | None) -> None:
        super().__init__()
        bins = length // 2 + 1
        if modes >= bins or generator is None:
            index = torch.arange(min(modes, bins))
        else:
            index = torch.randperm(bins, generator=generator)[:modes].sort()[0]
        self.length = length
        self.register_buffer("index", index)
        self.build_bases()
        self.register_load_state_dict_post_hook(_rebuild_bases)

    def build_bases(self) -> None:
        """Bases in float64, then float32; angles reduced modulo the length first so they stay exact. The inverse
        bases are made contiguous: litert-torch 0.10 can misconvert a transposed constant (it did here, depending
        on PYTHONHASHSEED)."""
        steps = torch.arange(self.length, dtype=torch.int64, device=self.index.device)
        angle = (2 * math.pi / self.length) * (steps[:, None] * self.index[None, :] % self.length).double()
        edge = (self.index == 0) | (2 * self.index == self.length)  # DC and Nyquist: real in rfft and in irfft
        cos, sin = torch.cos(angle), torch.sin(angle).masked_fill(edge, 0.0)
        weight = torch.where(edge, 1.0, 2.0).double() / self.length
        self.register_buffer("dft_cos", cos.float(), persistent=False)  # X = x @ cos - i x @ sin
        self.register_buffer("dft_sin", (-sin).float(), persistent=False)
        self.register_buffer("idft_cos", (cos * weight).T.float().contiguous(), persistent=False)
        self.register_buffer("idft_sin", (-sin * weight).T.float().contiguous(), persistent=False)

    def rfft(self, x: torch.Tensor) -> torch.Tensor:
        """[..., L] real -> [..., modes] complex."""
        return torch.fft.rfft(x, dim=-1)[..., self.index]

    def irfft(self, spectrum: torch.Tensor) -> torch.Tensor:
        """[..., modes] complex -> [..., L] real, the other bins zero."""
        full = spectrum.new_zeros(*spectrum.shape[:-1], self.length // 2 + 1)
        return torch.fft.irfft(full.index_copy(-1, self.index, spectrum), n=self.length, dim=-1)

    def dft(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x @ self.dft_cos, x @ self.dft_sin

    def idft(self, real: torch.Tensor, imag: torch.Tensor) -> torch.Tensor:
        return real @ self.idft_cos + imag @ self.idft_sin


class FourierWeights(nn.Module):
    """Per-mode complex channel mixing within each head: [B, H, E, M] -> [B, H, O, M]."""

    def __init__(self, n_heads: int, d_head: int, n_modes: int, d_model: int) -> None:
        super().__init__()
        scale = 1.0 / (d_model * d_model)
        self.weight_real = nn.Parameter(scale * torch.rand(n_heads, d_head, d_head, n_modes))
        self.weight_imag = nn.Parameter(scale * torch.rand(n_heads, d_head, d_head, n_modes))

    def mix(self, spectrum: torch.Tensor) -> torch.Tensor:
        return torch.einsum("bhem,heom->bhom", spectrum, torch.complex(self.weight_real, self.weight_imag))

    def mix_pairs(self, real: torch.Tensor, imag: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One batched matmul per (head, mode): [re, im] @ [[Wr, Wi], [-Wi, Wr]]."""
        x = torch.cat([real, imag], dim=2).permute(1, 3, 0, 2)  # [H, M, B, 2E]
        w = torch.cat([torch.cat([self.weight_real, self.weight_imag], dim=2),
                       torch.cat([-self.weight_imag, self.weight_real], dim=2)], dim=1)  # [H, 2E, 2O, M]
        out = (x @ w.permute(0, 3, 1, 2)).permute(2, 0, 3, 1)  # [B, H, 2O, M]
        return out.chunk(2, dim=2)


def split_heads(x: torch.Tensor, n_heads: int) -> torch.Tensor:
    """[B, L, H*E] -> [B, H, E, L], time last for the transforms."""
    return x.reshape(x.shape[0], x.shape[1], n_heads, -1).permute(0, 2, 3, 1)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """[B, H, E, L] -> [B, L, H*E]."""
    return x.permute(0, 3, 1, 2).reshape(x.shape[0], x.shape[3], -1)


def keep_heads(block: nn.Module, keep: torch.Tensor) -> None:
    """Structured pruning of FEB/FEA: keep whole heads `keep` (sorted indices), slicing the rows of the input
    projections, the columns of the output projection and the heads of the Fourier weights alike. torch-pruning
    cannot follow channels through the Fourier transforms, so this is done here, where the layout is known."""
    width = block.q_proj.out_features // block.n_heads
    channels = (keep[:, None] * width + torch.arange(width)).reshape(-1)
    for name in ("q_proj", "k_proj", "v_proj"):
        projection = getattr(block, name, None)
        if projection is not None:
            projection.weight = nn.Parameter(projection.weight.detach()[channels].contiguous())
            projection.bias = nn.Parameter(projection.bias.detach()[channels].contiguous())
            projection.out_features = len(channels)
    block.out_proj.weight = nn.Parameter(block.out_proj.weight.detach()[:, channels].contiguous())
    block.out_proj.in_features = len(channels)
    block.weights.weight_real = nn.Parameter(block.weights.weight_real.detach()[keep].contiguous())
    block.weights.weight_imag = nn.Parameter(block.weights.weight_imag.detach()[keep].contiguous())
    block.n_heads = len(keep)


class FrequencyEnhancedBlock(nn.Module):
    """FEB-f: a learned filter on a random subset of the query projection's frequencies."""

    def __init__(self, d_model: int, n_heads: int, length: int, modes: int, generator: torch.Generator) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.q_proj = nn.Linear(d_model, d_model)
        self.out_proj = nn.Linear(d_model, d_model)
        self.modes = FourierModes(length, modes, generator)
        self.weights = FourierWeights(n_heads, d_model // n_heads, len(self.modes.index), d_model)
        self.use_deployment_form = False

    keep_heads = keep_heads  # structured pruning by hand (see the function)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = split_heads(self.q_proj(x), self.n_heads)
        if self.use_deployment_form:
            out = self.modes.idft(*self.weights.mix_pairs(*self.modes.dft(q)))
        else:
            out = self.modes.irfft(self.weights.mix(self.modes.rfft(q)))
        return self.out_proj(merge_heads(out))


def complex_tanh(real: torch.Tensor, imag: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """tanh(a + ib) = (tanh 2a + i sech 2a sin 2b) / (1 + sech 2a cos 2b), sech from exp(-|2a|) so that
    nothing overflows."""
    decay = torch.exp(-2 * real.abs())
    sech = 2 * decay / (1 + decay * decay)
    denominator = 1 + sech * torch.cos(2 * imag)
    return torch.tanh(2 * real) / denominator, sech * torch.sin(2 * imag) / denominator


class FrequencyEnhancedAttention(nn.Module):
    """FEA-f: attention between the kept modes of queries and keys, applied to the values' modes."""

    def __init__(self, d_model: int, n_heads: int, length_q: int, length_kv: int, modes: int,
                 generator: torch.Generator) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.q_proj = nn.Linear(d_model, d_model)
        self.k_proj = nn.Linear(d_model, d_model)
        self.v_proj = nn.Linear(d_model, d_model)
        self.out_proj = nn.Linear(d_model, d_model)
        self.modes_q = FourierModes(length_q, modes, generator)
        self.modes_kv = FourierModes(length_kv, modes, generator)
        self.weights = FourierWeights(n_heads, d_model // n_heads, len(self.modes_q.index), d_model)
        self.output_scale = 1.0 / (d_model * d_model)
        self.use_deployment_form = False

    keep_heads = keep_heads  # structured pruning by hand (see the function)

    def forward(self, x: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        q = split_heads(self.q_proj(x), self.n_heads)
        k = split_heads(self.k_proj(memory), self.n_heads)
        v = split_heads(self.v_proj(memory), self.n_heads)
        if self.use_deployment_form:
            out = self.deployment_form(q, k, v)
        else:
            q, k, v = self.modes_q.rfft(q), self.modes_kv.rfft(k), self.modes_kv.rfft(v)
            scores = torch.tanh(q.transpose(-1, -2) @ k)  # [B, H, Mq, Mkv]
            out = self.modes_q.irfft(self.weights.mix(v @ scores.transpose(-1, -2)))
        return self.out_proj(merge_heads(out * self.output_scale))

    def deployment_form(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        (qr, qi), (kr, ki), (vr, vi) = self.modes_q.dft(q), self.modes_kv.dft(k), self.modes_kv.dft(v)
        qr, qi = qr.transpose(-1, -2), qi.transpose(-1, -2)
        sr, si = complex_tanh(qr @ kr - qi @ ki, qr @ ki + qi @ kr)
        sr, si = sr.transpose(-1, -2), si.transpose(-1, -2)
        return self.modes_q.idft(*self.weights.mix_pairs(vr @ sr - vi @ si, vr @ si + vi @ sr))


class EncoderLayer(nn.Module):
    def __init__(self, cfg: FEDformerConfig, generator: torch.Generator) -> None:
        super().__init__()
        self.attention = FrequencyEnhancedBlock(cfg.d_model, cfg.n_heads, cfg.seq_len, cfg.modes, generator)
        self.ffn = FeedForward(cfg.d_model, cfg.d_ff, cfg.dropout)
        self.decomp1 = decomposition(cfg.moving_avg, cfg.d_model)
        self.decomp2 = decomposition(cfg.moving_avg, cfg.d_model)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, _ = self.decomp1(x + self.dropout(self.attention(x)))
        x, _ = self.decomp2(x + self.ffn(x))
        return x


class DecoderLayer(nn.Module):
    """Seasonal path through FEB, FEA and FFN; the three trends removed on the way are projected to c_out."""

    def __init__(self, cfg: FEDformerConfig, generator: torch.Generator) -> None:
        super().__init__()
        dec_len = cfg.label_len + cfg.pred_len
        self.self_attention = FrequencyEnhancedBlock(cfg.d_model, cfg.n_heads, dec_len, cfg.modes, generator)
        self.cross_attention = FrequencyEnhancedAttention(cfg.d_model, cfg.n_heads, dec_len, cfg.seq_len,
                                                          cfg.modes, generator)
        self.ffn = FeedForward(cfg.d_model, cfg.d_ff, cfg.dropout)
        self.decomp1 = decomposition(cfg.moving_avg, cfg.d_model)
        self.decomp2 = decomposition(cfg.moving_avg, cfg.d_model)
        self.decomp3 = decomposition(cfg.moving_avg, cfg.d_model)
        self.trend_projection = CircularConv(cfg.d_model, cfg.c_out)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, trend1 = self.decomp1(x + self.dropout(self.self_attention(x)))
        x, trend2 = self.decomp2(x + self.dropout(self.cross_attention(x, memory)))
        x, trend3 = self.decomp3(x + self.ffn(x))
        return x, self.trend_projection(trend1 + trend2 + trend3)


_PAPER = dict(seq_len=96, label_len=48, d_model=512, n_heads=8, e_layers=2, d_layers=1, d_ff=2048,
              moving_avg=(24,), modes=64, dropout=0.05)
_SMALL = dict(seq_len=96, label_len=48, d_model=64, n_heads=4, e_layers=2, d_layers=1, d_ff=256,
              moving_avg=(24,), modes=64, dropout=0.05)


@register_model("fedformer", FEDformerConfig, {"paper": _PAPER, "small": _SMALL},
                TrainSchedule(lr=1e-4, batch_size=32, max_epochs=10, lr_decay="halve"),
                "FEDformer-f (Zhou et al. 2022): decomposition + attention on random Fourier modes")
class FEDformer(nn.Module):
    def __init__(self, cfg: FEDformerConfig) -> None:
        super().__init__()
        if cfg.c_out not in (1, cfg.enc_in):
            raise ValueError(f"c_out must be 1 or enc_in ({cfg.enc_in}), got {cfg.c_out}")
        generator = torch.Generator().manual_seed(cfg.mode_seed)
        self.decomposition = decomposition(cfg.moving_avg, cfg.enc_in)
        self.enc_embedding = ValueCalendarEmbedding(cfg.enc_in, cfg.d_model, cfg.calendar_features, cfg.dropout)
        self.dec_embedding = ValueCalendarEmbedding(cfg.enc_in, cfg.d_model, cfg.calendar_features, cfg.dropout)
        self.encoder = nn.ModuleList(EncoderLayer(cfg, generator) for _ in range(cfg.e_layers))
        self.encoder_norm = SeasonalLayerNorm(cfg.d_model)
        self.decoder = nn.ModuleList(DecoderLayer(cfg, generator) for _ in range(cfg.d_layers))
        self.decoder_norm = SeasonalLayerNorm(cfg.d_model)
        self.projection = nn.Linear(cfg.d_model, cfg.c_out)
        self.seq_len, self.label_len, self.pred_len = cfg.seq_len, cfg.label_len, cfg.pred_len
        self.target = cfg.target_index % cfg.enc_in if cfg.c_out == 1 < cfg.enc_in else None

    def forward(self, history: torch.Tensor, calendar: torch.Tensor) -> torch.Tensor:
        start = self.seq_len - self.label_len
        seasonal_init, trend = decoder_init(self.decomposition, history, self.label_len, self.pred_len, self.target)
        memory = self.enc_embedding(history, calendar[:, : self.seq_len])
        for layer in self.encoder:
            memory = layer(memory)
        memory = self.encoder_norm(memory)
        x = self.dec_embedding(seasonal_init, calendar[:, start:])
        for layer in self.decoder:
            x, residual_trend = layer(x, memory)
            trend = trend + residual_trend
        return (trend + self.projection(self.decoder_norm(x)))[:, -self.pred_len:]
