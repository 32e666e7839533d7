"""Structured pruning at 0.5 for every registered model that has heads, neurons or lags (the tiny forecasters,
which have none, are refused in one line): MACs fall by >= 40%, the pruned model computes what the
dense one computes with the removed heads and neurons switched off, trains a step, round-trips through a
checkpoint without replaying the pruning, and exports to ONNX and TFLite matching torch within 1e-4."""

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
from tsprune_edge.prune.structured import StructuredConfig, StructuredPruner, ffn_layers

TOLERANCE = 1e-4
NOTHING_STRUCTURED = ("fits", "sparsetsf")  # no attention, no hidden layer, no lag layer
STRUCTURED_MODELS = [name for name in available_models() if name not in NOTHING_STRUCTURED]


def pruned_pair(name: str, ratio: float = 0.5, **config) -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    dense = create_model(name, "small", pred_len=96).eval()
    pruned = copy.deepcopy(dense)
    pruner = StructuredPruner(pruned, StructuredConfig(ratio, **config))
    for _ in range(pruner.config.steps):
        pruner.step()
    return dense, pruned.eval()


def kept_indices(full: torch.Tensor, part: torch.Tensor) -> list[int]:
    """Rows of `full` that `part` kept (pruning copies them exactly)."""
    return [int(((full - row).abs().sum(dim=1) == 0).nonzero()[0]) for row in part]


@torch.no_grad()
def switch_off_removed(dense: nn.Module, pruned: nn.Module) -> nn.Module:
    """The dense model with every removed input of a shrunk layer zeroed: it must compute what the pruned one
    does, which fails if q, k, v and the output projection lost different heads. Autoformer's correlation is a
    mean over channels, so its kept queries are also scaled to the kept width."""
    reference = copy.deepcopy(dense)
    shrunk = dict(pruned.named_modules())
    for path, layer in reference.named_modules():
        small = shrunk[path]
        if isinstance(layer, nn.Linear) and small.in_features < layer.in_features:
            if hasattr(pruned.get_submodule(path.rsplit(".layers", 1)[0]), "keep_lags"):
                keep = pruned.get_submodule(path.rsplit(".layers", 1)[0]).lags.tolist()
            else:
                keep = kept_indices(layer.weight.T, small.weight.T)
            layer.weight[:, sorted(set(range(layer.in_features)) - set(keep))] = 0
        if type(layer).__name__ == "AutoCorrelationLayer" and small.q_proj.out_features < layer.q_proj.out_features:
            keep = kept_indices(layer.q_proj.weight, small.q_proj.weight)
            removed = sorted(set(range(layer.q_proj.out_features)) - set(keep))
            layer.q_proj.weight[removed] = 0
            layer.q_proj.weight.mul_(layer.q_proj.out_features / len(keep))
    return reference


@pytest.mark.parametrize("name", STRUCTURED_MODELS)
def test_structured_half_cuts_macs_and_keeps_the_kept_computation(name):
    dense, pruned = pruned_pair(name)
    before, _ = count_macs(dense)
    after, _ = count_macs(pruned)
    assert after <= 0.6 * before, f"{name}: MACs {before} -> {after}"
    history, calendar = inputs(dense)
    with torch.no_grad():
        expected = switch_off_removed(dense, pruned)(history, calendar)
        got = pruned(history, calendar)
    assert got.shape == expected.shape
    assert (got - expected).abs().max() <= 1e-5


@pytest.mark.parametrize("name", STRUCTURED_MODELS)
def test_pruned_model_trains_one_step(name):
    _, pruned = pruned_pair(name)
    pruned.train()
    history, calendar = inputs(pruned)
    target = torch.randn(history.shape[0], 96, pruned.config.c_out)
    before = {k: v.clone() for k, v in pruned.state_dict().items()}
    optimiser = torch.optim.Adam(pruned.parameters(), lr=1e-3)
    loss = nn.functional.mse_loss(pruned(history, calendar), target)
    loss.backward()
    optimiser.step()
    assert torch.isfinite(loss)
    changed = [k for k, v in pruned.state_dict().items() if v.dtype.is_floating_point and not torch.equal(v, before[k])]
    assert changed, f"{name}: no parameter moved"


@pytest.mark.parametrize("name", STRUCTURED_MODELS)
def test_pruned_checkpoint_round_trips_and_exports(name, etth1_windows, tmp_path):
    _, pruned = pruned_pair(name)
    path = tmp_path / "model.pt"
    save_checkpoint(make_checkpoint(pruned, data_record(pruned), {}, {}, pruning={"method": "structured"}), path)
    loaded = load_checkpoint(path).build_model()
    assert {k: v.shape for k, v in loaded.state_dict().items()} == {k: v.shape for k, v in pruned.state_dict().items()}
    assert [m.n_heads for m in loaded.modules() if hasattr(m, "n_heads")] == \
        [m.n_heads for m in pruned.modules() if hasattr(m, "n_heads")]
    history, calendar = etth1_windows(loaded.config.seq_len, loaded.config.label_len)
    with torch.no_grad():
        expected = loaded(torch.from_numpy(history), torch.from_numpy(calendar)).numpy()
        assert np.array_equal(expected, pruned(torch.from_numpy(history), torch.from_numpy(calendar)).numpy())
    sample = (torch.from_numpy(history[:1]), torch.from_numpy(calendar[:1]))
    for export, run, filename in ((export_onnx, run_onnx, "model.onnx"), (export_tflite, run_tflite, "model.tflite")):
        artifact = export(loaded, sample, tmp_path / filename)
        for index in range(len(history)):
            got = run(artifact, history[index:index + 1], calendar[index:index + 1])
            error = np.abs(got - expected[index:index + 1]).max()
            assert error <= TOLERANCE, (name, filename, index, error)


def test_global_ranking_gives_uneven_widths_rounded_to_the_multiple():
    _, pruned = pruned_pair("crossformer", global_ranking=True, round_to=8)
    widths = [layer.out_features for layer in ffn_layers(pruned)]
    assert all(width % 8 == 0 and width >= 8 for width in widths)
    assert len(set(widths)) > 1
    initial = [layer.out_features for layer in ffn_layers(create_model("crossformer", "small"))]
    assert sum(initial) * 0.45 <= sum(widths) <= sum(initial) * 0.5
    heads = [m.n_heads for m in pruned.modules() if hasattr(m, "n_heads")]
    assert min(heads) >= 1 and len(set(heads)) > 1
    assert 2 * len(heads) <= sum(heads) <= 2 * len(heads) + 2  # half kept, plus layers raised to one head


def test_global_ranking_never_empties_a_layer():
    _, pruned = pruned_pair("transformer", 0.9, global_ranking=True)
    assert [m.n_heads for m in pruned.modules() if hasattr(m, "n_heads")] == [1, 1, 1, 1]
    assert all(layer.out_features >= 8 for layer in ffn_layers(pruned))


def test_iterative_steps_reach_the_one_shot_widths():
    _, one_shot = pruned_pair("transformer", 0.5)
    _, stepped = pruned_pair("transformer", 0.5, steps=2)
    shapes = {k: v.shape for k, v in one_shot.state_dict().items()}
    assert {k: v.shape for k, v in stepped.state_dict().items()} == shapes


def test_round_to_one_keeps_exact_ratio_widths():
    _, pruned = pruned_pair("itransformer", 0.3, round_to=1)
    assert [layer.out_features for layer in ffn_layers(pruned)] == [128 - int(128 * 0.3)] * 2


@pytest.mark.parametrize("name", NOTHING_STRUCTURED)
def test_models_without_heads_neurons_or_lags_are_refused_in_one_line(name):
    with pytest.raises(UserError, match=f"^{name} has no heads or ffn that structured pruning can remove$"):
        StructuredPruner(create_model(name, "small", pred_len=96), StructuredConfig(0.5))
