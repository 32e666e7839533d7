"""Informer: ProbSparse attention against the paper's definition, its full-attention fallback for short
sequences, fixed sampling in eval, the deployment form, and the distilling encoder."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from tsprune_edge.data import WindowSpec, load_forecast_data
from tsprune_edge.export.artifacts import export_onnx
from tsprune_edge.export.runtimes import run_onnx
from tsprune_edge.models import create_model, resolve_config
from tsprune_edge.models.deployment import deployment_form
from tsprune_edge.models.informer import Distilling, ProbSparseAttention, encoder_lengths
from tsprune_edge.models.layers import MultiHeadAttention


def calendar_like(batch: int, length: int, generator: torch.Generator) -> torch.Tensor:
    highs = (13, 29, 7, 24)
    return torch.stack([torch.randint(0, h, (batch, length), generator=generator) for h in highs], dim=-1).float()


def random_inputs(model: nn.Module, batch: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    cfg = model.config
    generator = torch.Generator().manual_seed(1)
    history = torch.randn(batch, cfg.seq_len, cfg.enc_in, generator=generator)
    return history, calendar_like(batch, cfg.seq_len + cfg.pred_len, generator)


def both_forms(model: nn.Module, *inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        training_form = model(*inputs)
        with deployment_form(model):
            deployed = model(*inputs)
    return training_form, deployed


def direct_probsparse(attention: ProbSparseAttention, x: torch.Tensor) -> torch.Tensor:
    """The paper's ProbSparse self-attention, one query at a time, with the module's fixed key samples."""
    batch, length, _ = x.shape
    heads, sample = attention.n_heads, attention.sample_index
    q, k, v = (proj(x).reshape(batch, length, heads, -1) for proj in
               (attention.q_proj, attention.k_proj, attention.v_proj))
    out = torch.empty_like(v)
    for b in range(batch):
        for h in range(heads):
            qs, ks, vs = q[b, :, h], k[b, :, h], v[b, :, h]
            sparsity = torch.stack([(ks[sample[i]] @ qs[i]).max() - (ks[sample[i]] @ qs[i]).mean()
                                    for i in range(length)])
            active = set(sparsity.argsort(descending=True)[:attention.n_active].tolist())
            for i in range(length):
                visible = i + 1 if attention.causal else length
                if i in active:
                    weights = torch.softmax(ks[:visible] @ qs[i] / math.sqrt(qs.shape[-1]), dim=0)
                    out[b, i, h] = weights @ vs[:visible]
                else:
                    out[b, i, h] = vs[: i + 1].sum(dim=0) if attention.causal else vs.mean(dim=0)
    return attention.out_proj(out.reshape(batch, length, -1))


@pytest.mark.parametrize("causal", [False, True])
def test_probsparse_matches_the_papers_definition_in_both_forms(causal):
    torch.manual_seed(0)
    attention = ProbSparseAttention(32, 4, 0.0, factor=2, length=40, causal=causal, seed=3).eval()
    assert attention.n_active == 8 and attention.sample_index.shape == (40, 8)
    x = torch.randn(2, 40, 32)
    expected = direct_probsparse(attention, x)
    for got in both_forms(attention, x):
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("causal", [False, True])
def test_short_sequences_make_probsparse_full_attention(causal):
    """u = c*ceil(ln 8) = 15 >= 8: every query is active, so the result is exactly (causal) full attention."""
    torch.manual_seed(0)
    attention = ProbSparseAttention(32, 4, 0.0, factor=5, length=8, causal=causal, seed=0).eval()
    assert attention.n_active == 8 and attention.sample_index is None
    full = MultiHeadAttention(32, 4, 0.0).eval()
    full.load_state_dict(attention.state_dict())
    x = torch.randn(2, 8, 32)
    mask = torch.ones(8, 8, dtype=torch.bool).triu(1) if causal else None
    expected = full(x, x, x, mask)
    for got in both_forms(attention, x):
        torch.testing.assert_close(got, expected)


def test_a_short_window_model_uses_only_full_attention_and_exports(tmp_path):
    model = create_model("informer", "small", seq_len=8, label_len=4, pred_len=4).eval()
    sparse = [m for m in model.modules() if isinstance(m, ProbSparseAttention)]
    assert len(sparse) == 3 and all(m.sample_index is None for m in sparse)
    history, calendar = random_inputs(model, batch=1)
    path = export_onnx(model, (history, calendar), tmp_path / "short.onnx")
    expected = model(history, calendar).detach().numpy()
    assert np.abs(run_onnx(path, history.numpy(), calendar.numpy()) - expected).max() <= 1e-5


def test_deployment_form_equals_training_form_on_random_inputs():
    for overrides in (dict(seq_len=48, label_len=24, pred_len=24), dict(pred_len=192)):
        model = create_model("informer", "small", **overrides).eval()
        training_form, deployed = both_forms(model, *random_inputs(model))
        assert training_form.shape == (3, model.config.pred_len, 7)
        assert (training_form - deployed).abs().max() <= 1e-5


def test_deployment_form_equals_training_form_on_etth1(shared_data):
    model = create_model("informer", "small", pred_len=96).eval()
    data = load_forecast_data("ETTh1", WindowSpec(96, 48, 96))
    history, calendar, _ = data.window_arrays("test", np.arange(0, 2785, 197))
    training_form, deployed = both_forms(model, torch.from_numpy(history), torch.from_numpy(calendar))
    assert (training_form - deployed).abs().max() <= 1e-5


def test_key_samples_are_seeded_saved_buffers_and_training_draws_fresh_ones():
    torch.manual_seed(1)
    first = create_model("informer", "small", dropout=0.0)
    torch.manual_seed(2)
    second = create_model("informer", "small", dropout=0.0)
    samples = {k: v for k, v in first.state_dict().items() if k.endswith("sample_index")}
    assert set(samples) == {"encoder.0.attention.sample_index", "encoder.1.attention.sample_index",
                            "decoder.0.self_attention.sample_index"}
    for key, value in samples.items():  # the same whatever the global random state
        assert torch.equal(value, second.state_dict()[key]), key
    second.encoder[0].attention.sample_index.zero_()
    second.load_state_dict(first.state_dict())
    assert torch.equal(second.encoder[0].attention.sample_index, samples["encoder.0.attention.sample_index"])

    inputs = random_inputs(first)
    with torch.no_grad():
        assert torch.equal(first.eval()(*inputs), second.eval()(*inputs))
        first.train()  # fresh samples each pass, unless in the deployment form
        drawn = [first(*inputs) for _ in range(2)]
        with deployment_form(first):
            kept = [first(*inputs) for _ in range(2)]
    assert not torch.equal(drawn[0], drawn[1])
    assert torch.equal(kept[0], kept[1])


def test_distilling_halves_the_sequence_like_the_papers_layer():
    layer = Distilling(16).eval()
    layer.norm.running_mean.uniform_(-1, 1)
    layer.norm.running_var.uniform_(0.5, 2)
    conv = nn.Conv1d(16, 16, 3, padding=1, padding_mode="circular", bias=False)
    conv.weight.data.copy_(layer.conv.conv.weight.data)
    for length in (96, 7):
        x = torch.randn(2, length, 16)
        expected = nn.MaxPool1d(3, 2, 1)(nn.functional.elu(layer.norm(conv(x.transpose(1, 2))))).transpose(1, 2)
        got = layer(x)
        assert got.shape == (2, math.ceil(length / 2), 16)
        torch.testing.assert_close(got, expected)


def test_encoder_lengths_and_active_queries_of_the_paper_preset():
    model = create_model("informer", "paper")
    assert encoder_lengths(model.config) == [96, 48]
    assert [layer.attention.n_active for layer in model.encoder] == [15, 12]  # 3*ceil(ln 96), 3*ceil(ln 48)
    assert model.decoder[0].self_attention.n_active == 15  # decoder length 48 + 96 = 144
    assert len(model.distilling) == 1
    undistilled = create_model("informer", "small", distil=False, e_layers=3)
    assert encoder_lengths(undistilled.config) == [96, 96, 96] and len(undistilled.distilling) == 0


def test_paper_preset_is_the_studys_setting():
    cfg = resolve_config("informer", "paper")
    assert (cfg.seq_len, cfg.label_len, cfg.d_model, cfg.n_heads, cfg.e_layers, cfg.d_layers, cfg.d_ff, cfg.factor,
            cfg.dropout, cfg.distil) == (96, 48, 512, 8, 2, 1, 2048, 3, 0.05, True)
