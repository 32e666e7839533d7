"""SparseTSF and FITS: each computes its paper's forecast (checked against a direct computation written from the
papers' equations), the presets hold the authors' sizes, FITS's deployment form equals its FFT form, and the CLI
refuses an unknown model or a lookback 720 the dataset cannot hold in one line, writing nothing."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tests.inputs import inputs
from tests.refusals import assert_one_line_error
from tsprune_edge.models import create_model, resolve_config
from tsprune_edge.models.deployment import deployment_form
from tsprune_edge.models.fits import cut_frequency


def randomised(name: str, **config) -> torch.nn.Module:
    """A model whose every weight is random (FITS's imaginary part starts at zero, which would hide its terms)."""
    torch.manual_seed(0)
    model = create_model(name, "small", **config).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0.0, 0.1)
    return model


def test_presets_hold_the_authors_sizes():
    """SparseTSF at 720 -> 96: a 25-tap kernel and a 30 x 4 linear. FITS: cut_freq (720 // 24 + 1) * 6 + 10 = 196
    bins stretched to int(196 * 816 / 720) = 222, complex weights and bias as real pairs."""
    assert sum(p.numel() for p in create_model("sparsetsf", "paper").parameters()) == 25 + 30 * 4
    paper = resolve_config("fits", "paper")
    assert (paper.seq_len, cut_frequency(paper)) == (720, 196)
    assert sum(p.numel() for p in create_model("fits", "paper").parameters()) == 2 * (196 * 222 + 222)
    assert resolve_config("sparsetsf").seq_len == resolve_config("fits").seq_len == 96
    assert cut_frequency(resolve_config("fits", seq_len=48)) == 25  # the rule's 28 capped at the bins there are


@pytest.mark.parametrize(("seq_len", "pred_len"), [(48, 24), (40, 30)])
def test_sparsetsf_forecasts_each_phase_from_its_own_past(seq_len, pred_len):
    """A history that is not whole periods is padded at its start with the mean; the forecast is cut to pred_len."""
    model = randomised("sparsetsf", seq_len=seq_len, pred_len=pred_len, period_len=12)
    history, calendar = inputs(model)
    mean = history.mean(dim=1, keepdim=True)
    x = (history - mean).transpose(1, 2)
    x = F.pad(x, (-seq_len % 12, 0))
    kernel = model.aggregate.weight.reshape(-1)
    smoothed = F.pad(x, (6, 6)).unfold(-1, 13, 1) @ kernel + x
    periods = smoothed.reshape(3, 7, -1, 12)  # [B, C, period index, phase]
    weight = model.linear.weight  # [periods out, periods in]
    expected = torch.einsum("bcnp,mn->bcmp", periods, weight).reshape(3, 7, -1)[:, :, :pred_len]
    with torch.no_grad():
        torch.testing.assert_close(model(history, calendar), expected.transpose(1, 2) + mean)


def test_fits_interpolates_the_low_passed_spectrum():
    model = randomised("fits", seq_len=48, pred_len=24, h_order=1)
    history, calendar = inputs(model)
    mean = history.mean(dim=1, keepdim=True)
    std = torch.sqrt(history.var(dim=1, keepdim=True) + 1e-5)
    spectrum = torch.fft.rfft((history - mean) / std, dim=1)[:, :13]  # (48 // 24 + 1) * 1 + 10 bins
    weight = torch.complex(model.upsampler.real.weight, model.upsampler.imag.weight)
    bias = torch.complex(model.upsampler.real.bias, model.upsampler.imag.bias)
    stretched = torch.einsum("bfc,of->boc", spectrum, weight) + bias[None, :, None]  # 13 -> int(13 * 1.5) = 19 bins
    full = torch.fft.irfft(F.pad(stretched, (0, 0, 0, 37 - 19)), n=72, dim=1) * 1.5
    with torch.no_grad():
        torch.testing.assert_close(model(history, calendar), full[:, 48:] * std + mean)


@pytest.mark.parametrize("preset", ["small", "paper"])
def test_fits_deployment_form_equals_the_fft_form(preset):
    torch.manual_seed(0)
    model = create_model("fits", preset).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0.0, 0.05)
        history, calendar = inputs(model)
        expected = model(history, calendar)
        with deployment_form(model):
            got = model(history, calendar)
    assert float((got - expected).abs().max()) <= 1e-5


def test_an_unknown_model_is_refused_and_nothing_is_written(cli, shared_data, tmp_path):
    result = cli("train", "--model", "sparsetfs", "--data", "ETTh1", "--out", str(tmp_path / "out"))
    assert_one_line_error(result, "unknown model 'sparsetfs'", "fits", "sparsetsf")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["sparsetsf", "fits"])
def test_lookback_720_on_a_short_dataset_is_refused_and_nothing_is_written(name, cli, shared_data, tmp_path):
    result = cli("train", "--model", name, "--preset", "paper", "--data", "illness", "--out", str(tmp_path / "out"))
    line = assert_one_line_error(result)
    assert line == ("error: illness has too few rows for seq_len 720 + pred_len 96: its train split holds 676 rows, "
                    "needs at least 816")
    assert list(tmp_path.iterdir()) == []
