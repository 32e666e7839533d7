"""Every registered model: the deployment signature, training step, registry behaviour, export-friendly parts."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tests.inputs import SMALL, inputs
from tsprune_edge.errors import UserError
from tsprune_edge.models import available_models, create_model, resolve_config, tiny_models
from tsprune_edge.models.layers import TokenEmbedding
from tsprune_edge.models.patchtst import PatchTST


def test_registry_holds_the_foundation_models():
    assert {"transformer", "patchtst"} <= set(available_models())


def test_the_tiny_forecasters_are_marked_in_the_registry():
    # the one list the leaderboard reads: a few thousand MACs, no attention
    assert tiny_models() == ["dlinear", "fits", "sparsetsf"]


@pytest.mark.parametrize("name", available_models())
@pytest.mark.parametrize(("enc_in", "c_out"), [(7, 7), (7, 1), (1, 1)])
def test_deployment_signature(name, enc_in, c_out):
    model = create_model(name, "small", enc_in=enc_in, c_out=c_out, **SMALL).eval()
    history, calendar = inputs(model)
    forecast = model(history, calendar)
    assert forecast.shape == (3, 24, c_out)
    assert forecast.dtype == torch.float32 and torch.isfinite(forecast).all()
    assert model.config.c_out == c_out and model.name == name


@pytest.mark.parametrize("name", available_models())
def test_one_training_step_changes_every_trainable_weight_without_nan(name):
    torch.manual_seed(0)
    model = create_model(name, "small", **SMALL).train()
    before = {k: v.clone() for k, v in model.named_parameters()}
    history, calendar = inputs(model, batch=8)
    loss = model(history, calendar).pow(2).mean()
    loss.backward()
    torch.optim.Adam(model.parameters(), lr=1e-3).step()
    for key, value in model.named_parameters():
        assert torch.isfinite(value).all(), key
        assert not torch.equal(before[key], value), f"{key} got no gradient"


@pytest.mark.parametrize("name", available_models())
def test_horizon_longer_than_history(name):
    model = create_model(name, "small", seq_len=48, label_len=24, pred_len=96).eval()
    history, calendar = inputs(model, batch=2)
    assert model(history, calendar).shape == (2, 96, 7)


@pytest.mark.parametrize("name", available_models())
def test_eval_mode_is_deterministic(name):
    model = create_model(name, "small", **SMALL).eval()
    history, calendar = inputs(model)
    assert torch.equal(model(history, calendar), model(history, calendar))


def test_paper_preset_matches_the_study():
    cfg = resolve_config("transformer", "paper")
    assert (cfg.seq_len, cfg.label_len, cfg.d_model, cfg.n_heads, cfg.e_layers, cfg.d_layers, cfg.d_ff,
            cfg.dropout) == (96, 48, 512, 8, 2, 1, 2048, 0.05)


def test_none_overrides_keep_the_preset_and_unknown_settings_fail():
    assert resolve_config("transformer", "small", d_model=None).d_model == 64
    assert resolve_config("transformer", "small", d_model=32).d_model == 32
    with pytest.raises(UserError, match="no setting patch_len"):
        resolve_config("transformer", "small", patch_len=8)


def test_token_embedding_equals_circular_convolution():
    embedding = TokenEmbedding(5, 16)
    reference = nn.Conv1d(5, 16, 3, padding=1, padding_mode="circular", bias=False)
    reference.weight.data.copy_(embedding.conv.weight.data)
    x = torch.randn(2, 30, 5)
    torch.testing.assert_close(embedding(x), reference(x.transpose(1, 2)).transpose(1, 2))


def test_patches_equal_unfold_of_the_padded_window():
    model = create_model("patchtst", "small")
    assert isinstance(model, PatchTST) and model.n_patches == 12
    x = torch.randn(2, 7, 96)
    padded = torch.cat([x, x[:, :, -1:].repeat(1, 1, 8)], dim=2)
    torch.testing.assert_close(model.patches(x), padded.unfold(-1, 16, 8))


def test_patchtst_ms_forecasts_the_target_channel():
    """With several inputs and one output, PatchTST returns its forecast of the target input."""
    model = create_model("patchtst", "small", enc_in=3, c_out=1, target_index=1, **SMALL).eval()
    full = create_model("patchtst", "small", enc_in=3, c_out=3, **SMALL).eval()
    full.load_state_dict(model.state_dict())
    history, calendar = inputs(model)
    torch.testing.assert_close(model(history, calendar), full(history, calendar)[:, :, 1:2])


def test_moving_average_matches_a_direct_computation():
    from tsprune_edge.models.decomposition import MovingAverage, SeriesDecomposition

    x = torch.randn(2, 30, 3)
    for k in (3, 4, 25):
        front, back = (k - 1) // 2, k - 1 - (k - 1) // 2
        padded = torch.cat([x[:, :1].repeat(1, front, 1), x, x[:, -1:].repeat(1, back, 1)], dim=1)
        expected = torch.stack([padded[:, t:t + k].mean(dim=1) for t in range(30)], dim=1)
        torch.testing.assert_close(MovingAverage(k)(x), expected)
    seasonal, trend = SeriesDecomposition(25)(x)
    torch.testing.assert_close(seasonal + trend, x)
