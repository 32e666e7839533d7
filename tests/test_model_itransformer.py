"""iTransformer: variates (and the history's calendar features) as tokens; equivariant over data variates."""

from __future__ import annotations

import torch

from tests.inputs import SMALL, inputs
from tsprune_edge.models import create_model


def test_tokens_are_the_normalised_variates_then_the_scaled_calendar_of_the_history():
    model = create_model("itransformer", "small", enc_in=5, c_out=5, **SMALL).eval()
    history, calendar = inputs(model)
    series = model.variate_series(history, calendar)
    assert series.shape == (3, 5 + 4, 48)
    torch.testing.assert_close(series[:, :5], history.transpose(1, 2))
    scaled = calendar[:, :48] / torch.tensor([12.0, 31.0, 6.0, 23.0]) - 0.5
    torch.testing.assert_close(series[:, 5:], scaled.transpose(1, 2))
    assert model.embedding(series).shape == (3, 9, model.config.d_model)


def test_forecast_is_the_projection_of_the_data_tokens_only():
    """Changing a calendar value changes the forecast (calendar tokens are attended to) but adds no output."""
    model = create_model("itransformer", "small", enc_in=3, c_out=3, **SMALL).eval()
    history, calendar = inputs(model)
    forecast = model(history, calendar)
    assert forecast.shape == (3, 24, 3)
    shifted = calendar.clone()
    shifted[:, :48, 3] = (shifted[:, :48, 3] + 1) % 24
    assert not torch.allclose(model(history, shifted), forecast)
    future = calendar.clone()
    future[:, 48:] = 0.0
    torch.testing.assert_close(model(history, future), forecast)  # only the history's calendar is a token


def test_permuting_the_input_variates_permutes_the_forecast():
    torch.manual_seed(0)
    model = create_model("itransformer", "small", enc_in=6, c_out=6, **SMALL).eval()
    history, calendar = inputs(model)
    history = history * torch.arange(1.0, 7.0) + torch.arange(6.0)  # distinct scales and levels per variate
    permutation = torch.tensor([3, 0, 5, 1, 4, 2])
    with torch.no_grad():
        expected = model(history, calendar)[:, :, permutation]
        got = model(history[:, :, permutation], calendar)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_normalisation_restores_level_and_scale():
    """With use_norm, an affine change of a variate's history changes its forecast by the same affine map."""
    model = create_model("itransformer", "small", enc_in=4, c_out=4, **SMALL).eval()
    history, calendar = inputs(model)
    with torch.no_grad():
        base = model(history, calendar)
        moved = model(history * 3.0 + 10.0, calendar)
    torch.testing.assert_close(moved, base * 3.0 + 10.0, atol=1e-4, rtol=1e-4)


def test_single_output_is_the_target_variate_of_the_full_forecast():
    model = create_model("itransformer", "small", enc_in=4, c_out=1, target_index=2, **SMALL).eval()
    full = create_model("itransformer", "small", enc_in=4, c_out=4, **SMALL).eval()
    full.load_state_dict(model.state_dict())
    history, calendar = inputs(model)
    torch.testing.assert_close(model(history, calendar), full(history, calendar)[:, :, 2:3])
