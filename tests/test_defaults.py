"""Default folders and shared pruning options as a user meets them in a source checkout: `export`, `bench` and
`report` run with no folder options in a copy of the repository write only under runs/ (never among the package
sources export/ and devices/), each reads what the one before wrote by default, and `export --dims
heads,ffn,width` writes a width-pruned bundle beside dense."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest

from tsprune_edge.cli import main

REPO = Path(__file__).resolve().parents[1]
SOURCES = ("export", "devices", "tsprune_edge")  # the package folders at the top of a checkout
FAST_BENCH = ("--runtime", "onnxruntime", "--rounds", "2", "--max-rounds", "2", "--min-time", "0.05",
              "--min-iters", "5")


def tree(root: Path) -> dict[str, str]:
    """Every file under `root` with its sha256, folders by name."""
    state = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs:
            state[os.path.relpath(os.path.join(folder, name), root)] = "dir"
        for name in files:
            path = Path(folder, name)
            state[os.path.relpath(path, root)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return state


def run(*args: str) -> int:
    try:
        main(list(args))
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    return 0


@pytest.fixture(scope="module")
def checkout(tmp_path_factory):
    """A copy of the repository's package folders; export (one training epoch, ONNX only, width pruned too), bench
    and report run in it with their default folders, as `tsprune-edge export --sparsity 0.5` would in a checkout."""
    root = tmp_path_factory.mktemp("checkout")
    for name in SOURCES:
        shutil.copytree(REPO / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
    sources = {name: tree(root / name) for name in SOURCES}
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        codes = [run("export", "--sparsity", "0.5", "--dims", "heads,ffn,width", "--epochs", "1",
                     "--finetune-epochs", "0", "--format", "onnx"),
                 run("bench", *FAST_BENCH),
                 run("report")]
    return root, sources, codes


def test_commands_in_a_checkout_write_only_under_runs(checkout):
    root, sources, codes = checkout
    assert codes == [0, 0, 0]
    assert {name: tree(root / name) for name in SOURCES} == sources  # not one file added or changed
    assert sorted(p.name for p in root.iterdir()) == sorted([*SOURCES, "runs"])
    assert sorted(p.name for p in (root / "runs").iterdir()) == ["bundles", "export", "report", "results"]
    assert sorted(p.name for p in (root / "runs" / "bundles").iterdir()) == ["dense", "percall",
                                                                            "structured_width-0.5"]


def test_bench_and_report_read_what_the_step_before_wrote_by_default(checkout):
    root, _, _ = checkout
    (run_dir,) = (root / "runs" / "results").iterdir()
    measured = json.loads((run_dir / "bench.json").read_text())
    assert {item["bundle"] for item in measured["items"]} == {"dense", "percall", "structured_width-0.5"}
    rows = json.loads((root / "runs" / "report" / "report.json").read_text())["rows"]
    assert {row["variant"] for row in rows} == {"dense", "percall", "structured_width-0.5"}
    assert {row["run"] for row in rows} == {run_dir.name}


def test_export_dims_writes_a_width_pruned_bundle_beside_dense(checkout):
    root, _, _ = checkout
    bundles = root / "runs" / "bundles"
    dense = json.loads((bundles / "dense" / "manifest.json").read_text())
    pruned = json.loads((bundles / "structured_width-0.5" / "manifest.json").read_text())
    assert dense["pruning"] is None
    assert pruned["pruning"]["request"]["dims"] == ["heads", "ffn", "width"]
    assert pruned["pruning"]["round_to"] == {"round_to": 8, "source": "default"}
    d_model = dense["model"]["config"]["d_model"]
    assert d_model == 64
    widths = pruned["pruning"]["achieved"]["widths"]
    assert widths and set(widths.values()) == {32}  # every residual stream: 64 - int(64 * 0.5)
    assert pruned["model"]["macs"] < dense["model"]["macs"]


def test_bench_reads_the_folder_export_writes():
    """One definition: the default of `bench --artifacts` is the default of `export --out`, `report` reads `bench
    --results`'s, and none of them is a source folder."""
    import inspect

    from tsprune_edge.cli import bench_cmd, export_cmd, report_cmd

    def default(command, name: str):
        return inspect.signature(command).parameters[name].default.default

    assert default(bench_cmd.bench_command, "artifacts") == default(export_cmd.export_command, "out") \
        == Path("runs/bundles")
    assert default(bench_cmd.bench_command, "results") == Path("runs/results")
    assert default(report_cmd.report_command, "out") == Path("runs/report")
    for path in (Path("runs/bundles"), Path("runs/results"), Path("runs/report")):
        assert path.parts[0] not in SOURCES and not (REPO / path.parts[0]).joinpath("__init__.py").exists()


def test_sweep_takes_round_to_as_prune_does_and_resumes_an_older_spec():
    """`sweep --round-to` decides the structured widths as `prune --round-to` does; a sweep.json written before the
    option existed reads back as the same spec (its widths came from the profile, as they still do by default)."""
    from tsprune_edge.sweep.spec import SweepSpec

    spec = SweepSpec(models=("transformer",), methods=("structured",), sparsities=(0.5,), device="rpi4", host="pi")
    assert spec.prune_rounding() == {"round_to": 4, "round_to_source": "profile rpi4"}
    assert SweepSpec(**{**spec.__dict__, "round_to": 2}).prune_rounding() == {"round_to": 2,
                                                                              "round_to_source": "option"}
    older = {k: v for k, v in spec.to_json().items() if k != "round_to"}
    assert SweepSpec.from_json(older) == spec
