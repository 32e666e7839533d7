"""FEDformer-f: mode selection, the deployment form against the FFT path, and the decomposition-based init."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.inputs import random_calendar
from tsprune_edge.data import WindowSpec, load_forecast_data
from tsprune_edge.models import create_model, resolve_config
from tsprune_edge.models.decomposition import MixtureDecomposition, SeriesDecomposition
from tsprune_edge.models.deployment import deployment_form
from tsprune_edge.models.fedformer import (
    FourierModes,
    FourierWeights,
    FrequencyEnhancedAttention,
    FrequencyEnhancedBlock,
    complex_tanh,
    split_heads,
)

TOLERANCE = 1e-5


def both_forms(module: torch.nn.Module, *args: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        training = module(*args)
        with deployment_form(module):
            deployed = module(*args)
    return training, deployed


def test_modes_are_a_fixed_random_subset_or_all_bins():
    model = create_model("fedformer", "small")
    encoder = model.encoder[0].attention.modes.index
    assert torch.equal(encoder, torch.arange(49))  # 96 steps have 49 rfft bins, fewer than 64: all kept
    cross = model.decoder[0].cross_attention
    assert torch.equal(cross.modes_kv.index, torch.arange(49))
    for index in (model.decoder[0].self_attention.modes.index, cross.modes_q.index):  # 144 steps: 64 of 73
        assert len(index) == 64 and torch.equal(index, index.unique()) and int(index.max()) <= 72
    assert not torch.equal(model.decoder[0].self_attention.modes.index, cross.modes_q.index)
    again = create_model("fedformer", "small")
    assert torch.equal(again.decoder[0].self_attention.modes.index, model.decoder[0].self_attention.modes.index)
    assert "decoder.0.self_attention.modes.index" in model.state_dict()


@pytest.mark.parametrize("length", [10, 9, 144])
def test_dft_bases_equal_rfft_and_irfft_of_the_kept_bins(length):
    modes = FourierModes(length, 64 if length < 100 else 20, torch.Generator().manual_seed(1))
    x = torch.randn(3, 5, length)
    real, imag = modes.dft(x)
    expected = modes.rfft(x)
    torch.testing.assert_close(real, expected.real, atol=1e-5, rtol=1e-6)
    torch.testing.assert_close(imag, expected.imag, atol=1e-5, rtol=1e-6)
    # a spectrum with imaginary parts at DC and Nyquist too: irfft drops them, so must the bases
    spectrum = torch.complex(torch.randn(3, 5, len(modes.index)), torch.randn(3, 5, len(modes.index)))
    torch.testing.assert_close(modes.idft(spectrum.real, spectrum.imag), modes.irfft(spectrum), atol=1e-6, rtol=0)


def test_buffers_are_contiguous():
    """litert-torch 0.10 misconverted a transposed constant (the inverse bases), depending on PYTHONHASHSEED."""
    assert all(buffer.is_contiguous() for buffer in create_model("fedformer", "small").buffers())


def test_complex_tanh_in_real_arithmetic_equals_torch():
    z = torch.complex(torch.randn(4000) * torch.tensor([0.1, 1.0, 10.0, 300.0]).repeat(1000),
                      torch.randn(4000) * torch.tensor([300.0, 10.0, 1.0, 0.1]).repeat(1000))
    z = z[(torch.tanh(z).abs() < 20)]  # far enough from the poles at i(pi/2 + k pi) for float32 to agree
    real, imag = complex_tanh(z.real, z.imag)
    expected = torch.tanh(z.to(torch.complex128))
    torch.testing.assert_close(real.double(), expected.real, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(imag.double(), expected.imag, atol=1e-4, rtol=1e-4)


def test_fourier_weights_are_real_parameters_of_head_shape():
    model = create_model("fedformer", "paper")
    assert not any(p.is_complex() for p in model.parameters())
    weights = model.decoder[0].cross_attention.weights
    assert isinstance(weights, FourierWeights)
    assert weights.weight_real.shape == weights.weight_imag.shape == (8, 64, 64, 64)


@pytest.mark.parametrize("block", ["feb", "fea"])
def test_blocks_deployment_form_equals_fft_path_with_trained_size_weights(block):
    """Each block on its own, its Fourier weights the size training gives them. FEA without its output factor,
    and with query and key projections small enough that every score stays inside |z| < pi/2, where complex
    tanh has no pole nearby and the comparison tests the algebra rather than float32 rounding."""
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(3)
    if block == "feb":
        module = FrequencyEnhancedBlock(32, 4, 144, 64, generator).eval()
        args = (torch.randn(2, 144, 32),)
    else:
        module = FrequencyEnhancedAttention(32, 4, 144, 96, 64, generator).eval()
        module.output_scale = 1.0
        args = (torch.randn(2, 144, 32), torch.randn(2, 96, 32))
        with torch.no_grad():
            for projection in (module.q_proj, module.k_proj):
                projection.weight.mul_(0.04)
                projection.bias.zero_()
            q = module.modes_q.rfft(split_heads(module.q_proj(args[0]), 4))
            k = module.modes_kv.rfft(split_heads(module.k_proj(args[1]), 4))
            assert 0.5 < (q.transpose(-1, -2) @ k).abs().max() < 1.5
    with torch.no_grad():
        module.weights.weight_real.normal_(0, 0.05)
        module.weights.weight_imag.normal_(0, 0.05)
    training, deployed = both_forms(module, *args)
    assert (training - module.out_proj.bias).abs().max() > 0.05
    assert (training - deployed).abs().max() <= TOLERANCE


def test_model_deployment_form_equals_fft_path_on_random_inputs():
    torch.manual_seed(0)
    model = create_model("fedformer", "small").eval()
    generator = torch.Generator().manual_seed(0)
    history = torch.randn(4, 96, 7, generator=generator)
    training, deployed = both_forms(model, history, random_calendar(4, 192, generator))
    assert (training - deployed).abs().max() <= TOLERANCE


@pytest.mark.parametrize("weight_std", [None, 0.05])
def test_model_deployment_form_equals_fft_path_on_etth1(shared_data, weight_std):
    """Real test windows, with the initial Fourier weights and with weights of the size training gives them."""
    data = load_forecast_data("ETTh1", WindowSpec(96, 48, 96))
    history, calendar, _ = data.window_arrays("test", np.arange(0, 2785, 200))
    torch.manual_seed(0)
    model = create_model("fedformer", "small", pred_len=96).eval()
    if weight_std is not None:
        with torch.no_grad():
            for weights in (m for m in model.modules() if isinstance(m, FourierWeights)):
                weights.weight_real.normal_(0, weight_std)
                weights.weight_imag.normal_(0, weight_std)
    training, deployed = both_forms(model, torch.from_numpy(history), torch.from_numpy(calendar))
    assert (training - deployed).abs().max() <= TOLERANCE


def test_loading_a_state_dict_rebuilds_the_bases_from_its_modes():
    source = create_model("fedformer", "small", mode_seed=1).eval()
    target = create_model("fedformer", "small", mode_seed=2).eval()
    assert not torch.equal(source.decoder[0].self_attention.modes.index,
                           target.decoder[0].self_attention.modes.index)
    target.load_state_dict(source.state_dict())
    generator = torch.Generator().manual_seed(0)
    history, calendar = torch.randn(2, 96, 7, generator=generator), random_calendar(2, 192, generator)
    expected = both_forms(source, history, calendar)[0]
    for got in both_forms(target, history, calendar):
        torch.testing.assert_close(got, expected, atol=TOLERANCE, rtol=0)


def test_decoder_starts_from_the_trend_init_of_the_target():
    """With the seasonal projection and the trend projections zeroed, the forecast is the trend init over the
    horizon: the history's mean, of the target channel when one channel is forecast."""
    model = create_model("fedformer", "small", enc_in=3, c_out=1, target_index=1).eval()
    with torch.no_grad():
        model.projection.weight.zero_()
        model.projection.bias.zero_()
        for layer in model.decoder:
            layer.trend_projection.conv.weight.zero_()
    generator = torch.Generator().manual_seed(0)
    history = torch.randn(2, 96, 3, generator=generator)
    with torch.no_grad():
        forecast = model(history, random_calendar(2, 192, generator))
    torch.testing.assert_close(forecast, history[:, :, 1:2].mean(dim=1, keepdim=True).expand(-1, 96, -1))


def test_one_kernel_is_a_plain_decomposition_and_several_a_trained_mixture():
    assert isinstance(create_model("fedformer", "small").decomposition, SeriesDecomposition)
    torch.manual_seed(0)
    model = create_model("fedformer", "small", moving_avg=[12, 24], seq_len=48, label_len=24, pred_len=24)
    assert isinstance(model.decoder[0].decomp3, MixtureDecomposition)
    generator = torch.Generator().manual_seed(0)
    model(torch.randn(4, 48, 7, generator=generator), random_calendar(4, 72, generator)).pow(2).mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_paper_preset_and_unsupported_output_width():
    cfg = resolve_config("fedformer", "paper")
    assert (cfg.d_model, cfg.n_heads, cfg.e_layers, cfg.d_layers, cfg.d_ff, tuple(cfg.moving_avg), cfg.modes,
            cfg.dropout) == (512, 8, 2, 1, 2048, (24,), 64, 0.05)
    with pytest.raises(ValueError, match="c_out"):
        create_model("fedformer", "small", enc_in=7, c_out=3)
