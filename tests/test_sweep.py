"""`tsprune-edge sweep`: the grid end to end in real worker processes, killed and resumed, a failing cell isolated,
and the same cells from tasks on a real local Ray instance."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tsprune_edge.report.accuracy import accuracy_label
from tsprune_edge.report.verdict import TOO_FEW

CLI = [sys.executable, "-m", "tsprune_edge"]
GRID = ("--models", "dlinear", "--methods", "structured,unstructured", "--sparsities", "0.5", "--data", "synthetic",
        "--epochs", "1", "--no-profile")
FAST = ("--rounds", "1", "--max-rounds", "1", "--min-time", "0.1", "--min-iters", "10")
CELLS = {"train--dlinear", "variant--dlinear--dense", "variant--dlinear--structured-0.5",
         "variant--dlinear--unstructured-0.5", "bench--dlinear"}
TIMING_KEYS = {"seconds", "seconds_per_epoch", "seconds_total", "finished"}


def sweep(out: Path, *extra: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, "sweep", *GRID, *FAST, "--out", str(out), *extra], capture_output=True, text=True,
                          timeout=timeout)


def markers(out: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in (out / "cells").glob("*.json")
            if not p.name.endswith(".error.json")}


@pytest.fixture(scope="module")
def local_sweep(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    out = tmp_path_factory.mktemp("sweep") / "local"
    done = sweep(out)
    assert done.returncode == 0, done.stderr[-3000:]
    return out, done


def test_sweep_trains_prunes_exports_benches_and_reports_every_cell(local_sweep):
    out, done = local_sweep
    assert set(markers(out)) == CELLS
    for record in markers(out).values():  # every file a cell made is on disk as the worker made it
        for name, digest in record.get("files", {}).items():
            assert hashlib.sha256((out / name).read_bytes()).hexdigest() == digest
    bench = markers(out)["bench--dlinear"]
    assert bench["bundles"] == ["dense", "percall", "structured-0.5", "unstructured-0.5"]
    rows = json.loads((out / "report" / "report.json").read_text())["rows"]
    assert {(r["variant"], r["format"]) for r in rows} == {
        (v, f) for v in ("dense", "percall", "structured-0.5", "unstructured-0.5") for f in ("onnx", "tflite")}
    for row in rows:
        assert row["model"] == ("percall-probe" if row["variant"] == "percall" else "dlinear")
        assert row["run"] == bench["run_id"]
        if row["variant"] not in ("dense", "percall"):  # one round (FAST) gives no interval: nothing is judged
            assert row["verdict"] == TOO_FEW and "speedup" not in row and row["paired_rounds"] == 1
            # accuracy beside speed, from torch's per-window errors: their mean ratio is the test MSEs' ratio
            dense = next(r for r in rows if r["variant"] == "dense" and r["format"] == row["format"])
            assert row["accuracy_source"] == "torch" and row["max_mse_rise"] == 0.01
            assert row["mse_change"] == pytest.approx(row["torch_mse"] / dense["torch_mse"] - 1, abs=1e-6)
            assert row["mse_change_low"] < row["mse_change"] < row["mse_change_high"]
            assert row["accuracy_label"] == accuracy_label(row["mse_change_low"], row["mse_change_high"])
    structured = json.loads((out / "models/dlinear/structured-0.5/pruning.json").read_text())
    assert structured["mac_reduction"] > 0.4  # really pruned, and measured from the pruned bundle
    # the dense bundle is dense fine-tuned as the variants were: the same training budget, said in the record
    assert structured["training_budget"]["comparison"] == "dense and pruned: 1 epoch + 1 fine-tune epoch each"
    dense, pruned = (json.loads((out / f"export/dlinear/{v}/manifest.json").read_text())
                     for v in ("dense", "structured-0.5"))
    assert dense["model"]["checkpoint"] == "models/dlinear/dense-finetuned/model.pt"
    assert dense["training"] == pruned["training"] and dense["training"]["finetune_epochs"] == 1
    assert "verdict on desktop" in done.stdout and "structured-0.5" in done.stdout


def test_a_finished_sweep_reruns_nothing(local_sweep):
    out, _ = local_sweep
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and "report" not in p.parts}
    again = sweep(out)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "5 finished earlier and kept" in again.stderr
    assert "done " not in again.stderr and "bench desktop" not in again.stderr
    after = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and "report" not in p.parts}
    assert after == before


def test_another_grid_in_the_same_folder_is_refused(local_sweep):
    out, _ = local_sweep
    done = subprocess.run([*CLI, "sweep", *GRID[:5], "0.6", *GRID[6:], *FAST, "--out", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith(f"error: {out} holds a different sweep (sparsities")
    assert "Traceback" not in done.stderr


def _kill_when(proc: subprocess.Popen, ready, what: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, f"the sweep ended before {what}"
        assert time.monotonic() < deadline, f"no {what} within {timeout} s"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and its workers, as a crash or a power cut would
    proc.wait()


def test_a_killed_sweep_resumes_without_redoing_finished_cells(tmp_path):
    out = tmp_path / "killed"
    argv = [*CLI, "sweep", *GRID, "--rounds", "2", "--max-rounds", "2", "--min-time", "0.3", "--min-iters", "10",
            "--out", str(out)]

    def run() -> subprocess.Popen:
        return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)

    # 1. killed while variants are being computed: the first finished variant's marker is there, others are not
    first = run()
    _kill_when(first, lambda: len([m for m in markers(out) if m.startswith("variant--")]) >= 1,
               "a finished variant")
    kept = {name: (out / "cells" / f"{name}.json").read_bytes() for name in markers(out)}
    assert "train--dlinear" in kept and len(kept) < len(CELLS) - 1
    checkpoint_mtime = (out / "models/dlinear/dense/model.pt").stat().st_mtime_ns

    # 2. resumed, then killed again in the middle of the bench: some measurements are on disk
    second = run()
    raw = out / "results" / "dlinear"
    _kill_when(second, lambda: len(list(raw.glob("*/raw/*__r*.json"))) >= 2, "two measurements")
    stderr = second.stderr.read()
    assert f"{len(kept)} finished earlier and kept" in stderr
    for name in kept:
        assert f"done {name} " not in stderr  # never redone
        assert (out / "cells" / f"{name}.json").read_bytes() == kept[name]
    assert (out / "models/dlinear/dense/model.pt").stat().st_mtime_ns == checkpoint_mtime
    measured = {p.name: p.read_bytes() for p in raw.glob("*/raw/*__r*.json")}

    # 3. resumed to the end: the bench run is finished, not restarted, and every earlier measurement is kept
    third = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    assert third.returncode == 0, third.stderr[-3000:]
    assert "4 finished earlier and kept" in third.stderr and "done " not in third.stderr
    runs = [p.parent for p in raw.glob("*/bench.json")]
    assert len(runs) == 1 and len(list(raw.iterdir())) == 1
    for name, data in measured.items():
        assert (runs[0] / "raw" / name).read_bytes() == data
    assert len(list((runs[0] / "raw").glob("*__r*.json"))) == 2 * 4 * 2 * 2  # formats x bundles x rounds x passes
    assert set(markers(out)) == CELLS


def test_a_failing_cell_is_recorded_and_the_rest_of_the_sweep_goes_on(tmp_path):
    out = tmp_path / "failing"
    done = subprocess.run([*CLI, "sweep", "--models", "dlinear", "--methods", "structured", "--sparsities",
                           "0.5,0.99", "--data", "synthetic", "--epochs", "1", "--no-profile", *FAST,
                           "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 2
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: 1 cells failed (variant--dlinear--structured-0.99: --sparsity 0.99 would remove")
    assert "run the same command again" in last and "Traceback" not in done.stderr
    error = json.loads((out / "cells" / "variant--dlinear--structured-0.99.error.json").read_text())
    assert "input lags" in error["error"]
    assert not (out / "export/dlinear/structured-0.99").exists()
    assert markers(out)["bench--dlinear"]["bundles"] == ["dense", "percall", "structured-0.5"]
    rows = json.loads((out / "report" / "report.json").read_text())["rows"]
    assert {r["variant"] for r in rows} == {"dense", "percall", "structured-0.5"}


RAY_SCRIPT = """
set -u
ip link set lo up
export RAY_AUTH_MODE=token RAY_AUTH_TOKEN="$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
trap 'ray stop --force >/dev/null 2>&1' EXIT
ray start --head --port 6390 --num-cpus 2 --include-dashboard false --disable-usage-stats >"$1/ray-start.log" 2>&1
ss -Hltn >"$1/listening.txt"
shift
"$@"
"""


def test_the_ray_path_gives_the_same_cells_as_local_processes(local_sweep, tmp_path):
    """A real Ray head in a private network namespace, so that its servers listen on loopback only (Ray binds
    every interface it has), with a token of its own: nothing in ~/.ray is read or left behind."""
    local, _ = local_sweep
    out = tmp_path / "ray"
    assert shutil.which("unshare") and shutil.which("ip"), "needs util-linux unshare and iproute2 (scripts/ci-apt.sh)"
    ray = Path(sys.executable).with_name("ray")
    env = {**os.environ, "PATH": f"{ray.parent}:{os.environ['PATH']}"}
    done = subprocess.run(["unshare", "--net", "--fork", "bash", "-c", RAY_SCRIPT, "ray-test", str(tmp_path),
                           *CLI, "sweep", *GRID, *FAST, "--out", str(out), "--ray", "127.0.0.1:6390"],
                          capture_output=True, text=True, timeout=900, env=env)
    assert done.returncode == 0, (tmp_path / "ray-start.log").read_text()[-2000:] + done.stderr[-3000:]
    assert "on Ray cluster at 127.0.0.1:6390 (2 CPUs)" in done.stderr
    listening = [line.split()[3] for line in (tmp_path / "listening.txt").read_text().splitlines() if line.strip()]
    assert listening and all(a.startswith(("127.0.0.1:", "[::ffff:127.0.0.1]:", "[::1]:")) for a in listening)
    assert set(markers(out)) == set(markers(local)) == CELLS

    def facts(root: Path) -> dict:
        metrics = json.loads((root / "models/dlinear/dense/metrics.json").read_text())
        result = {"dense": {k: metrics[k] for k in ("parameters", "val", "test")}}
        for variant in ("structured-0.5", "unstructured-0.5"):
            pruning = json.loads((root / f"models/dlinear/{variant}/pruning.json").read_text())
            result[variant] = {k: pruning[k] for k in ("achieved", "after", "test", "mac_reduction")}
        for manifest in sorted(root.glob("export/dlinear/*/manifest.json")):
            record = json.loads(manifest.read_text())
            result[manifest.parent.name + "/bundle"] = {
                "model": {k: v for k, v in record["model"].items() if k not in ("checkpoint", "checkpoint_sha256")},
                "errors": {f: [v["max_abs_error"] for v in a["validation"]] for f, a in record["artifacts"].items()}}
        return result

    assert facts(out) == facts(local)
    rows = json.loads((out / "report" / "report.json").read_text())["rows"]
    local_rows = json.loads((local / "report" / "report.json").read_text())["rows"]
    assert sorted((r["variant"], r["format"], r["torch_mse"]) for r in rows) == \
        sorted((r["variant"], r["format"], r["torch_mse"]) for r in local_rows)


def test_width_matched_adds_a_width_variant_beside_each_structured_one():
    from tsprune_edge.errors import UserError
    from tsprune_edge.sweep.spec import SweepSpec, expand

    spec = SweepSpec(models=("transformer",), methods=("unstructured", "structured"), sparsities=(0.5, 0.8),
                     width_matched=True)
    variants = {c.variant: c for c in expand(spec) if c.kind == "variant"}
    assert set(variants) == {"dense", "unstructured-0.5", "unstructured-0.8", "structured-0.5", "structured-0.8",
                             "structured_width-0.5", "structured_width-0.8"}
    assert variants["structured_width-0.8"].dims == ("heads", "ffn", "width")
    assert variants["structured-0.8"].dims == ("heads", "ffn")
    assert SweepSpec.from_json(spec.to_json()) == spec
    with pytest.raises(UserError, match="add structured"):
        SweepSpec(models=("transformer",), methods=("unstructured",), width_matched=True).validate()


def test_a_sweep_for_a_board_prunes_to_its_round_to_and_exports_what_its_runtimes_load():
    """As `prune --device` and `export --device` do: a Nano sweep writes opset-13, IR-7, dense-weight ONNX (what
    ONNX Runtime 1.10 and TensorRT 8 read) and FFN widths on the Nano's 4-lane grid; the desktop keeps 8."""
    from rich.console import Console

    from tsprune_edge.sweep.cells import _prune_request
    from tsprune_edge.sweep.spec import SweepSpec, expand

    nano = SweepSpec(models=("transformer",), methods=("structured",), sparsities=(0.5,), device="jetson-nano",
                     host="nano", formats=("onnx",))
    nano.validate()
    export = nano.export_request()
    assert (export.formats, export.onnx_opset, export.onnx_ir, export.onnx_sparse) == (("onnx",), 13, 7, False)
    (cell,) = [c for c in expand(nano) if c.kind == "variant" and c.variant != "dense"]
    request = _prune_request(nano, cell, Console(quiet=True))
    assert (request.round_to, request.round_to_source) == (4, "profile jetson-nano")
    desktop = SweepSpec(models=("transformer",), methods=("structured",), sparsities=(0.5,))
    assert _prune_request(desktop, cell, Console(quiet=True)).round_to == 8
    assert desktop.export_request().onnx_opset == 20


def test_structured_on_a_model_without_heads_or_neurons_is_refused_before_any_work(cli, tmp_path):
    from tests.refusals import assert_one_line_error

    out = tmp_path / "sweep"
    result = cli("sweep", "--models", "dlinear,sparsetsf", "--methods", "structured", "--sparsities", "0.5",
                 "--data", "synthetic", "--out", str(out))
    assert_one_line_error(result, "sparsetsf has no heads or ffn that structured pruning can remove",
                          "drop sparsetsf from --models or structured from --methods")
    assert not out.exists()


def test_all_models_leaves_out_the_ones_a_method_cannot_take():
    from tsprune_edge.models import available_models
    from tsprune_edge.sweep.spec import SweepSpec

    spec = SweepSpec(models=tuple(available_models()), methods=("structured", "unstructured"), sparsities=(0.5,),
                     data="synthetic")
    refused = {m for m in spec.models if spec.structured_refusal(m)}
    assert refused == {"sparsetsf", "fits"}
    assert SweepSpec(models=("fits",), methods=("unstructured",), sparsities=(0.5,),
                     data="synthetic").structured_refusal("fits") is None
