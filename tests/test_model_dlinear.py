"""DLinear: decomposition + one linear map along time for the seasonal part and one for the trend."""

from __future__ import annotations

import torch

from tests.inputs import SMALL, inputs
from tsprune_edge.models import create_model, resolve_config
from tsprune_edge.models.decomposition import SeriesDecomposition


def test_forecast_is_seasonal_linear_plus_trend_linear_by_hand():
    torch.manual_seed(0)
    model = create_model("dlinear", "small", enc_in=3, c_out=3, **SMALL).eval()
    history, calendar = inputs(model)
    seasonal, trend = SeriesDecomposition(25)(history)
    s_weight, s_bias = model.seasonal_linear.layers[0].weight, model.seasonal_linear.layers[0].bias
    t_weight, t_bias = model.trend_linear.layers[0].weight, model.trend_linear.layers[0].bias
    expected = (torch.einsum("pl,blc->bpc", s_weight, seasonal) + s_bias[None, :, None]
                + torch.einsum("pl,blc->bpc", t_weight, trend) + t_bias[None, :, None])
    with torch.no_grad():
        torch.testing.assert_close(model(history, calendar), expected)


def test_averaging_weights_forecast_a_constant_series_as_that_constant():
    model = create_model("dlinear", "small", enc_in=2, c_out=2, **SMALL).eval()
    for part in (model.seasonal_linear, model.trend_linear):
        torch.nn.init.constant_(part.layers[0].weight, 1.0 / 48)
        torch.nn.init.zeros_(part.layers[0].bias)
    history = torch.tensor([1.5, -0.7]).expand(4, 48, 2).contiguous()
    calendar = torch.zeros(4, 48 + 24, 4)
    with torch.no_grad():
        torch.testing.assert_close(model(history, calendar), torch.tensor([1.5, -0.7]).expand(4, 24, 2))


def test_individual_gives_each_variable_its_own_layers():
    torch.manual_seed(0)
    model = create_model("dlinear", "small", enc_in=3, c_out=3, individual=True, **SMALL).eval()
    assert len(model.seasonal_linear.layers) == len(model.trend_linear.layers) == 3
    history, calendar = inputs(model)
    seasonal, trend = SeriesDecomposition(25)(history)
    with torch.no_grad():
        forecast = model(history, calendar)
        for i in range(3):
            expected = model.seasonal_linear.layers[i](seasonal[:, :, i]) + model.trend_linear.layers[i](trend[:, :, i])
            torch.testing.assert_close(forecast[:, :, i], expected)


def test_calendar_is_ignored_and_single_output_is_the_target():
    model = create_model("dlinear", "small", enc_in=4, c_out=1, target_index=1, **SMALL).eval()
    full = create_model("dlinear", "small", enc_in=4, c_out=4, **SMALL).eval()
    full.load_state_dict(model.state_dict())
    history, calendar = inputs(model)
    with torch.no_grad():
        torch.testing.assert_close(model(history, calendar), full(history, calendar)[:, :, 1:2])
        torch.testing.assert_close(model(history, calendar), model(history, torch.zeros_like(calendar)))


def test_paper_and_small_presets_are_identical():
    assert resolve_config("dlinear", "paper") == resolve_config("dlinear", "small")
    assert (resolve_config("dlinear", "paper").moving_avg, resolve_config("dlinear", "paper").individual) == (25, False)
