"""Width (d_model) pruning for every registered model that has one, with heads and FFN neurons (heads,ffn,width)
and alone (width): MACs fall by >= 60% at 0.5, every residual stream keeps a multiple of round_to channels, the
pruned model trains a step, round-trips through a checkpoint without replay and matches torch within 1e-4 in ONNX
Runtime (every dimension set) and ai-edge-litert (heads,ffn,width). DLinear has no width and Crossformer's cannot
be pruned yet: both are refused with the reason. Pruned
models are built once per session and shared."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from tests.inputs import data_record, inputs
from tsprune_edge.checkpoint import load_checkpoint, make_checkpoint, save_checkpoint
from tsprune_edge.errors import UserError
from tsprune_edge.export.artifacts import export_onnx, export_tflite
from tsprune_edge.export.runtimes import run_onnx, run_tflite
from tsprune_edge.models import available_models, create_model
from tsprune_edge.prune.analysis import count_macs
from tsprune_edge.prune.structured import StructuredConfig, StructuredPruner
from tsprune_edge.prune.study import StudyPruner
from tsprune_edge.prune.width import NORM_TYPES, has_width

TOLERANCE = 1e-4
WIDTH_MODELS = [name for name in available_models() if name not in ("dlinear", "crossformer", "fits", "sparsetsf")]
ALL_DIMS = ("heads", "ffn", "width")
DIM_SETS = {"heads,ffn,width": ALL_DIMS, "width": ("width",)}


@pytest.fixture(scope="session")
def pruned_models():
    """(name, dims key) -> (dense, pruned), each pruned at 0.5 with round_to 8 the first time it is asked for."""
    cache: dict = {}

    def get(name: str, dims: str) -> tuple[nn.Module, nn.Module]:
        if (name, dims) not in cache:
            torch.manual_seed(0)
            dense = create_model(name, "small", pred_len=96).eval()
            pruned = copy.deepcopy(dense)
            StructuredPruner(pruned, StructuredConfig(0.5, dims=DIM_SETS[dims], round_to=8)).step()
            cache[name, dims] = dense, pruned.eval()
        return cache[name, dims]

    return get


def norm_widths(model: nn.Module) -> dict[str, int]:
    return {name: m.weight.shape[0] for name, m in model.named_modules() if isinstance(m, NORM_TYPES)}


@pytest.mark.parametrize("name", WIDTH_MODELS)
def test_all_dimensions_at_half_remove_most_macs_and_round_the_width(name, pruned_models):
    dense, pruned = pruned_models(name, "heads,ffn,width")
    before, _ = count_macs(dense)
    after, _ = count_macs(pruned)
    assert after <= 0.4 * before, f"{name}: MACs {before} -> {after}"
    d_model = dense.config.d_model
    for norm, width in norm_widths(pruned).items():
        assert norm_widths(dense)[norm] == d_model
        assert width == d_model // 2 and width % 8 == 0, (norm, width)
    heads = [m.n_heads for m in pruned.modules() if hasattr(m, "n_heads")]
    assert heads == [m.n_heads // 2 for m in dense.modules() if hasattr(m, "n_heads")]


@pytest.mark.parametrize("dims", DIM_SETS)
@pytest.mark.parametrize("name", WIDTH_MODELS)
def test_width_pruned_model_trains_one_step(name, dims, pruned_models):
    _, pruned = pruned_models(name, dims)
    model = copy.deepcopy(pruned).train()
    history, calendar = inputs(model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss = nn.functional.mse_loss(model(history, calendar), torch.randn(history.shape[0], 96, model.config.c_out))
    loss.backward()
    optimiser.step()
    assert torch.isfinite(loss)
    assert any(not torch.equal(v, before[k]) for k, v in model.state_dict().items() if v.dtype.is_floating_point)


@pytest.mark.parametrize("dims", DIM_SETS)
@pytest.mark.parametrize("name", WIDTH_MODELS)
def test_width_pruned_checkpoint_round_trips_and_matches_in_the_runtimes(name, dims, pruned_models, etth1_windows,
                                                                        tmp_path):
    _, pruned = pruned_models(name, dims)
    path = tmp_path / "model.pt"
    save_checkpoint(make_checkpoint(pruned, data_record(pruned), {}, {}, pruning={"method": "structured"}), path)
    loaded = load_checkpoint(path).build_model()
    assert {k: v.shape for k, v in loaded.state_dict().items()} == {k: v.shape for k, v in pruned.state_dict().items()}
    assert norm_widths(loaded) == norm_widths(pruned)
    history, calendar = etth1_windows(loaded.config.seq_len, loaded.config.label_len)
    with torch.no_grad():
        expected = loaded(torch.from_numpy(history), torch.from_numpy(calendar)).numpy()
        assert np.array_equal(expected, pruned(torch.from_numpy(history), torch.from_numpy(calendar)).numpy())
    sample = (torch.from_numpy(history[:1]), torch.from_numpy(calendar[:1]))
    runtimes = [(export_onnx, run_onnx, "model.onnx")]
    if dims == "heads,ffn,width":  # TFLite conversion is slow: once per model
        runtimes.append((export_tflite, run_tflite, "model.tflite"))
    for export, run, filename in runtimes:
        artifact = export(loaded, sample, tmp_path / filename)
        for index in range(len(history)):
            got = run(artifact, history[index:index + 1], calendar[index:index + 1])
            error = np.abs(got - expected[index:index + 1]).max()
            assert error <= TOLERANCE, (name, dims, filename, index, error)


def test_width_only_leaves_heads_and_ffn_alone(pruned_models):
    dense, pruned = pruned_models("transformer", "width")
    assert [m.n_heads for m in pruned.modules() if hasattr(m, "n_heads")] == [4, 4, 4, 4]
    assert pruned.encoder[0].ffn.linear1.weight.shape == (256, 32)
    assert pruned.encoder[0].attention.q_proj.weight.shape == (64, 32)  # head width 16 kept, input narrowed
    assert pruned.enc_embedding.position.shape == (1, 96, 32)


def test_width_sparsity_sets_its_own_ratio():
    model = create_model("itransformer", "small", pred_len=96)
    StructuredPruner(model, StructuredConfig(0.5, dims=ALL_DIMS, width_ratio=0.25)).step()
    assert set(norm_widths(model).values()) == {96}
    assert model.encoder[0].ffn.linear1.weight.shape == (64, 96)


def test_dlinear_width_is_refused_with_the_reason():
    model = create_model("dlinear", "small")
    assert not has_width(model)
    with pytest.raises(UserError, match="^dlinear has no model width d_model to prune .*drop width from --dims$"):
        StructuredPruner(model, StructuredConfig(0.5, dims=ALL_DIMS))


@pytest.mark.parametrize("name", ["fits", "sparsetsf"])
def test_tiny_forecasters_width_is_refused_with_the_reason(name):
    with pytest.raises(UserError, match=f"^{name} has no model width d_model to prune .*drop width from --dims$"):
        StructuredPruner(create_model(name, "small"), StructuredConfig(0.5, dims=ALL_DIMS))


def test_crossformer_width_is_refused_with_the_reason():
    with pytest.raises(UserError, match="^crossformer's width cannot be pruned: its segment merging .*drop width"):
        StructuredPruner(create_model("crossformer", "small"), StructuredConfig(0.5, dims=ALL_DIMS))


def test_bad_dims_are_refused():
    with pytest.raises(UserError, match="^--dims takes a comma-separated subset of heads,ffn,width"):
        StructuredPruner(create_model("transformer", "small"), StructuredConfig(0.5, dims=("depth",)))


def test_study_method_refuses_a_model_with_only_output_layers():
    with pytest.raises(UserError, match=r"^dlinear has nothing the study's method can prune \(only output layers\)$"):
        StudyPruner(create_model("dlinear", "small"), 0.5)


@pytest.mark.parametrize("name", ["transformer", "patchtst"])
@pytest.mark.parametrize("sparsity", [0.5, 0.8])
def test_width_rows_are_pruned_to_the_macs_of_heads_and_ffn(name, sparsity):
    """The sweep's structured+width variant: a lower ratio over three dimensions, MACs within a few percent of what
    heads and FFN alone leave (widths move in multiples of round_to), and the closest such ratio."""
    from tsprune_edge.prune.matched import RESOLUTION, matched_ratio, pruned_macs

    torch.manual_seed(0)
    model = create_model(name, "small", pred_len=96)
    matched = matched_ratio(model, sparsity, ("heads", "ffn", "width"), 8)
    target = pruned_macs(model, StructuredConfig(sparsity, round_to=8))
    assert matched.target_macs == target < matched.dense_macs
    assert 0 < matched.ratio < sparsity
    assert abs(matched.macs - target) / target < 0.06
    all_dims = ("heads", "ffn", "width")
    assert matched.macs == pruned_macs(model, StructuredConfig(matched.ratio, round_to=8, dims=all_dims))
    for neighbour in (matched.ratio - RESOLUTION, matched.ratio + RESOLUTION):
        other = pruned_macs(model, StructuredConfig(neighbour, round_to=8, dims=all_dims))
        assert abs(other - target) >= abs(matched.macs - target)
