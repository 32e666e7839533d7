"""FITS (Xu et al., ICLR 2024, "FITS: Modeling Time Series with 10k Parameters"): forecasting as interpolation in
the frequency domain. Each series (shared weights across variables) is normalised by its window mean and
variance (reversible instance normalisation without affine weights), its rfft is cut to the lowest `cut_freq`
bins (a low-pass filter), one complex Linear(cut_freq, cut_freq * (seq_len + pred_len) / seq_len) stretches
that spectrum to the length of history plus horizon, and the irfft (times the length ratio) gives the
reconstructed history and the forecast; the forecast is de-normalised. It has no attention, no hidden width and
ignores the calendar input.

cut_freq follows the authors' rule (VEWOXIC/FITS run_longExp_F.py): (seq_len // base_period + 1) * h_order + 10
with base_period 24, unless set.

Presets: `paper` is the authors' ETTh1 setting (scripts/FITS/etth1_best.sh: h_order 6, train mode 1 = loss on
the forecast only, which is what our trainer does), at the lookback 720 the FITS and SparseTSF papers compare at
(that script uses 360); `small` is the same at our common seq_len 96.
Schedule: lr 0.0005, batch 128 (the script's 64, doubled by run_longExp_F.py when no augmentation is used),
at most 50 epochs, patience 20 (the script's), lradj type3 (lr for 3 epochs, then * 0.9 each epoch).

Deployment form (`use_deployment_form`, see deployment.py): the rfft of the kept bins as matmuls with cos/sin
bases [seq_len, cut_freq] and the irfft as matmuls with bases that hold only the horizon's steps (the
reconstructed history is not needed to forecast) and carry the length ratio; the complex layer is always run as
the 2x2 block of real products (real and imaginary parts as two real Linear layers), so the exported graph is
real-valued.

Departures from the authors:
- cut_freq is capped at the seq_len // 2 + 1 bins the rfft has (the authors' code fails for short windows such as
  our tests' seq_len 48), and the output bins at those of the history-plus-horizon length.
- The complex weights are two real Linear layers (`real`, `imag`), initialised as the authors' complex layer is
  (PyTorch's Linear init for the real part, imaginary part zero), so mask pruning sees two ordinary layers.
- One output from several inputs (features MS) returns the target input's forecast. The per-variable
  (`individual`) layer and the train modes that fit the reconstructed history are not offered.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from tsprune_edge.models.fedformer import FourierModes
from tsprune_edge.models.layers import select_target
from tsprune_edge.models.registry import ForecastConfig, TrainSchedule, register_model


@dataclass
class FITSConfig(ForecastConfig):
    base_period: int = 24
    h_order: int = 6
    cut_freq: int = 0  # 0: the authors' rule from base_period and h_order


def cut_frequency(cfg: FITSConfig) -> int:
    """Bins kept from the history's rfft."""
    rule = (cfg.seq_len // cfg.base_period + 1) * cfg.h_order + 10
    return min(cfg.cut_freq or rule, cfg.seq_len // 2 + 1)


class ComplexLinear(nn.Module):
    """y = W x + b with complex W and b, as real and imaginary parts: (Wr + iWi)(xr + ixi) + br + ibi."""

    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        self.real = nn.Linear(n_in, n_out)
        self.imag = nn.Linear(n_in, n_out)
        nn.init.zeros_(self.imag.weight)
        nn.init.zeros_(self.imag.bias)

    def forward(self, real: torch.Tensor, imag: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return (self.real(real) - F.linear(imag, self.imag.weight),
                self.imag(real) + F.linear(imag, self.real.weight))


_SMALL = dict(seq_len=96, h_order=6)
_PAPER = dict(seq_len=720, h_order=6)


@register_model("fits", FITSConfig, {"paper": _PAPER, "small": _SMALL},
                TrainSchedule(lr=0.0005, batch_size=128, max_epochs=50, lr_decay="hold3", patience=20),
                "FITS (Xu et al. 2024): a complex linear layer interpolating the low-passed spectrum", tiny=True)
class FITS(nn.Module):
    def __init__(self, cfg: FITSConfig) -> None:
        super().__init__()
        total = cfg.seq_len + cfg.pred_len
        cut = cut_frequency(cfg)
        self.seq_len, self.ratio = cfg.seq_len, total / cfg.seq_len
        self.c_out, self.target_index = cfg.c_out, cfg.target_index
        n_out = min(int(cut * self.ratio), total // 2 + 1)
        self.spectrum_in = FourierModes(cfg.seq_len, cut, None)
        self.upsampler = ComplexLinear(cut, n_out)
        self.spectrum_out = FourierModes(total, n_out, None)
        self.use_deployment_form = False
        # irfft bases restricted to the horizon, with the length ratio folded in: the deployment form's inverse
        self.register_buffer("horizon_cos", (self.spectrum_out.idft_cos[:, cfg.seq_len:] * self.ratio).contiguous(),
                             persistent=False)
        self.register_buffer("horizon_sin", (self.spectrum_out.idft_sin[:, cfg.seq_len:] * self.ratio).contiguous(),
                             persistent=False)

    def forward(self, history: torch.Tensor, calendar: torch.Tensor) -> torch.Tensor:
        mean = history.mean(dim=1, keepdim=True)  # [B, 1, C]
        x = history - mean
        std = torch.sqrt((x * x).sum(dim=1, keepdim=True) / (self.seq_len - 1) + 1e-5)  # unbiased, as torch.var
        x = (x / std).transpose(1, 2)  # [B, C, L]
        if self.use_deployment_form:
            real, imag = self.upsampler(*self.spectrum_in.dft(x))
            y = real @ self.horizon_cos + imag @ self.horizon_sin  # [B, C, pred_len]
        else:
            spectrum = self.spectrum_in.rfft(x)
            real, imag = self.upsampler(spectrum.real, spectrum.imag)
            y = self.spectrum_out.irfft(torch.complex(real, imag))[:, :, self.seq_len:] * self.ratio
        forecast = y.transpose(1, 2) * std + mean  # [B, pred_len, C]
        return select_target(forecast, self.c_out, self.target_index)
