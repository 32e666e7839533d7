"""Autoformer: Auto-Correlation's two delay-selection modes, its deployment form (== the FFT path), the
decomposition-based decoder init and the presets."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.inputs import random_calendar
from tsprune_edge.data import WindowSpec, load_forecast_data
from tsprune_edge.models import create_model, model_entry, resolve_config
from tsprune_edge.models.autoformer import (
    SeasonalLayerNorm,
    aggregate_delays,
    correlation_fft,
    correlation_matmul,
    delay_count,
    select_delays,
)
from tsprune_edge.models.deployment import deployment_form

PARITY = 1e-5


def both_forms(model: torch.nn.Module, history: torch.Tensor, calendar: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The eval-mode forecast by the FFT path and by the deployment form, which must not touch torch.fft."""
    with torch.no_grad():
        reference = model(history, calendar)
        with deployment_form(model), pytest.MonkeyPatch.context() as patch:
            patch.setattr(torch.fft, "rfft", None)
            patch.setattr(torch.fft, "irfft", None)
            deployed = model(history, calendar)
    return reference, deployed


def test_delay_count_is_factor_times_log_length():
    assert delay_count(96, 3) == 13 and delay_count(144, 3) == 14 and delay_count(2, 0.1) == 1


@pytest.mark.parametrize("length", [48, 96, 97, 144])
def test_gram_diagonals_equal_the_fft_correlation(length):
    generator = torch.Generator().manual_seed(length)
    q, k = torch.randn(3, length, 32, generator=generator), torch.randn(3, length, 32, generator=generator)
    direct = torch.stack([(torch.roll(q, -tau, dims=1) * k).sum(dim=(1, 2)) / 32 for tau in range(length)], dim=1)
    torch.testing.assert_close(correlation_fft(q, k), direct, atol=PARITY, rtol=0)
    torch.testing.assert_close(correlation_matmul(q, k), direct, atol=PARITY, rtol=0)


def test_gather_aggregation_equals_the_sum_of_rolled_values():
    generator = torch.Generator().manual_seed(0)
    values = torch.randn(2, 20, 5, generator=generator)
    delays = torch.tensor([[0, 3, 19], [7, 1, 12]])
    weights = torch.softmax(torch.randn(2, 3, generator=generator), dim=-1)
    expected = torch.stack([sum(weights[b, i] * torch.roll(values[b], -int(delays[b, i]), dims=0) for i in range(3))
                            for b in range(2)])
    torch.testing.assert_close(aggregate_delays(values, delays, weights), expected)


def test_training_shares_the_delays_of_the_batch_and_eval_picks_them_per_sample():
    corr = torch.randn(4, 30, generator=torch.Generator().manual_seed(1))
    delays, weights = select_delays(corr, 5, shared=True)
    assert (delays == torch.topk(corr.mean(dim=0), 5).indices).all()
    torch.testing.assert_close(weights, torch.softmax(torch.gather(corr, 1, delays), dim=-1))
    delays, weights = select_delays(corr, 5, shared=False)
    assert torch.equal(delays, torch.topk(corr, 5).indices)
    torch.testing.assert_close(weights, torch.softmax(torch.topk(corr, 5).values, dim=-1))


def test_without_dropout_one_sample_gets_the_same_forecast_in_both_modes():
    """Batch-shared and per-sample delays coincide for a batch of one, so the modes differ in nothing else."""
    model = create_model("autoformer", "small", dropout=0.0, pred_len=24)
    generator = torch.Generator().manual_seed(2)
    history, calendar = torch.randn(1, 96, 7, generator=generator), random_calendar(1, 120, generator)
    with torch.no_grad():
        torch.testing.assert_close(model.train()(history, calendar), model.eval()(history, calendar))


def test_deployment_form_equals_the_fft_path_on_random_inputs():
    torch.manual_seed(0)
    model = create_model("autoformer", "small", pred_len=96).eval()
    generator = torch.Generator().manual_seed(3)
    history, calendar = torch.randn(16, 96, 7, generator=generator), random_calendar(16, 192, generator)
    reference, deployed = both_forms(model, history, calendar)
    assert (reference - deployed).abs().max() <= PARITY


def test_deployment_form_equals_the_fft_path_on_etth1(shared_data):
    torch.manual_seed(0)
    model = create_model("autoformer", "small", pred_len=96).eval()
    data = load_forecast_data("ETTh1", WindowSpec(96, 48, 96))
    history, calendar, _ = data.window_arrays("test", np.array([0, 500, 1000, 2000, 2784]))
    reference, deployed = both_forms(model, torch.from_numpy(history), torch.from_numpy(calendar))
    assert (reference - deployed).abs().max() <= PARITY


def test_decoder_init_is_the_decomposed_label_window_then_zeros_and_the_mean():
    model = create_model("autoformer", "small", pred_len=24)
    history = torch.randn(2, 96, 7)
    seasonal, trend = model.decoder_init(history)
    assert seasonal.shape == trend.shape == (2, 72, 7)
    torch.testing.assert_close(seasonal[:, :48] + trend[:, :48], history[:, 48:])
    assert torch.equal(seasonal[:, 48:], torch.zeros(2, 24, 7))
    torch.testing.assert_close(trend[:, 48:], history.mean(dim=1, keepdim=True).expand(-1, 24, -1))


def test_one_of_several_inputs_takes_the_trend_of_the_target_input():
    model = create_model("autoformer", "small", enc_in=3, c_out=1, target_index=1, pred_len=24)
    full = create_model("autoformer", "small", enc_in=3, c_out=3, pred_len=24)
    history = torch.randn(2, 96, 3)
    torch.testing.assert_close(model.decoder_init(history)[1], full.decoder_init(history)[1][:, :, 1:2])
    with pytest.raises(ValueError, match="c_out 2"):
        create_model("autoformer", "small", enc_in=3, c_out=2)


def test_seasonal_layer_norm_has_no_level():
    out = SeasonalLayerNorm(16)(torch.randn(2, 30, 16) + 5)
    torch.testing.assert_close(out.mean(dim=1), torch.zeros(2, 16), atol=1e-6, rtol=0)


def test_presets_match_the_study_and_the_schedule():
    cfg = resolve_config("autoformer", "paper")
    assert (cfg.seq_len, cfg.label_len, cfg.d_model, cfg.n_heads, cfg.e_layers, cfg.d_layers, cfg.d_ff, cfg.factor,
            cfg.moving_avg, cfg.dropout) == (96, 48, 512, 8, 2, 1, 2048, 3, 24, 0.05)
    small = resolve_config("autoformer", "small")
    assert small.d_model % 8 == 0 and small.d_model // small.n_heads >= 8 and small.n_heads >= 2
    schedule = model_entry("autoformer").schedule
    assert (schedule.lr, schedule.batch_size, schedule.max_epochs, schedule.lr_decay) == (1e-4, 32, 10, "halve")
