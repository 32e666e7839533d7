"""Hostile input over every command: each case exits 2 with exactly one `error:` line, no traceback, and leaves the
file tree exactly as it was (paths, sizes, mtimes and sha256 compared before and after).

The home of command-line bad input (the rule for where a case goes: tests/conftest.py): a new refusal is a row of
`CASES`, under its command; a named test below only when a row cannot say it.

The cases run in-process in a copy of one shared workspace (a real dlinear checkpoint trained once per session on
the built-in synthetic data, damaged copies of it, fake bundles and bench runs, bad CSVs and device profiles);
almost all of them must fail before any heavy work. docs/hostile-input.md lists the classes.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.cli_commands import command_of, command_paths
from tests.refusals import assert_one_line_error
from tests.tree import snapshot

CK = "ck/model.pt"


def _payload(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def _damaged_checkpoints(root: Path, good: Path) -> None:
    """Our marker, but something missing or the wrong shape or type."""
    base = _payload(good)
    first = next(iter(base["state_dict"]))

    def save(name: str, change) -> None:
        payload = {**base, "state_dict": dict(base["state_dict"]), "data": dict(base["data"])}
        change(payload)
        (root / name).mkdir()
        torch.save(payload, root / name / "model.pt")

    save("ck_missing_tensor", lambda p: p["state_dict"].pop(first))
    save("ck_wrong_shape", lambda p: p["state_dict"].__setitem__(first, torch.zeros(3, 5, 7)))
    save("ck_extra_tensor", lambda p: p["state_dict"].__setitem__("surprise.weight", torch.zeros(2)))
    save("ck_no_state", lambda p: p.pop("state_dict"))
    save("ck_state_list", lambda p: p.__setitem__("state_dict", [1, 2, 3]))
    save("ck_config_str", lambda p: p.__setitem__("config", "d_model=64"))
    save("ck_no_data_keys", lambda p: p["data"].pop("seq_len"))
    save("ck_bad_model", lambda p: p.__setitem__("model_name", "gpt9"))
    save("ck_model_int", lambda p: p.__setitem__("model_name", 7))
    save("ck_version", lambda p: p.__setitem__("version", 99))
    save("ck_bad_config", lambda p: p.__setitem__("config", {**p["config"], "seq_len": -4}))
    save("ck_pruning_str", lambda p: p.__setitem__("pruning", "yes"))
    (root / "ck_text").mkdir()
    (root / "ck_text" / "model.pt").write_text("hello")
    (root / "ck_bytes").mkdir()
    (root / "ck_bytes" / "model.pt").write_bytes(bytes(range(256)) * 8)
    (root / "ck_truncated").mkdir()
    (root / "ck_truncated" / "model.pt").write_bytes(good.read_bytes()[:300])
    (root / "ck_foreign").mkdir()
    torch.save({"state_dict": {"w": torch.zeros(2)}}, root / "ck_foreign" / "model.pt")
    (root / "ck_pickle").mkdir()
    torch.save({"format": "tsprune-edge/checkpoint", "payload": Path("x")}, root / "ck_pickle" / "model.pt")


def _rows(n: int, value=lambda i: f"{i % 17},{(i * 7) % 23}") -> str:
    hours = np.datetime64("2020-01-01T00:00") + np.arange(n) * np.timedelta64(1, "h")
    return "".join(f"{str(t).replace('T', ' ')}:00,{value(i)}\n" for i, t in enumerate(hours))


def _csvs(root: Path) -> None:
    (root / "data.csv").write_text("date,a,OT\n" + _rows(3000))
    (root / "html.csv").write_text("<!DOCTYPE html><html><body>Not Found</body></html>\n")
    (root / "dup.csv").write_text("date,OT,OT\n" + _rows(3000))
    (root / "noname.csv").write_text("date,,OT\n" + _rows(3000))
    (root / "huge.csv").write_text("date,a,OT\n" + _rows(3000, lambda i: f"{(-1) ** i * 1e300},{i}"))
    (root / "latin1.csv").write_bytes(("date,caf\xe9,OT\n" + _rows(50)).encode("latin-1"))
    (root / "empty.csv").write_text("")
    (root / "nodate.csv").write_text("time,a,OT\n" + _rows(50))
    (root / "nan.csv").write_text("date,a,OT\n" + _rows(3000, lambda i: "nan,1" if i == 5 else f"{i},1"))
    (root / "ragged.csv").write_text("date,a,OT\n" + _rows(10) + "2021-01-01 00:00:00,1\n")
    repeated = _rows(3000).splitlines(keepends=True)
    (root / "dupdates.csv").write_text("date,a,OT\n" + "".join(repeated[:1500] + repeated[1499:]))
    (root / "abc.csv").write_text("date,a,OT\n" + _rows(5) + "2020-01-01 05:00:00,abc,1\n")
    for name, cell in _CELLS.items():  # line 5 (after the header and 3 rows) lacks its target value
        (root / f"cell-{name}.csv").write_text("date,a,OT\n" + _rows(3) + f"2020-01-01 03:00:00,1,{cell}\n")
    (root / "short.csv").write_text("date,a,OT\n" + _rows(200))  # the train split cannot hold one window
    (root / "rows1000.csv").write_text("date,a,OT\n" + _rows(1000))  # 96 + 96 windows, not lookback 720 + 96


_CELLS = {"empty": "", "nan": "nan", "NaN": "NaN", "inf": "inf"}


_PROFILES = {
    "zero-cores": "cores = 0\n",
    "round-zero": "round_to = 0\n",
    "bool-threads": "threads = [true, 4]\n",
    "zero-threads": "threads = [0]\n",
    "empty-threads": "threads = []\n",
    "scalar-threads": "threads = 4\n",
    "text-cores": 'cores = "four"\n',
    "bool-cores": "cores = true\n",
    "local-text": 'local = "yes"\n',
    "negative-memory": "memory_mb = -1\n",
    "unknown-key": 'colour = "red"\n',
    "bad-runtime": 'runtimes = ["tensorflow"]\n',
    "bad-interpreter": 'interpreters = {pytorch = "/usr/bin/python3"}\n',
    "host-int": "host = 5\n",
    "workdir-list": "workdir = [1]\n",
    "newline-python": 'python = "python3\\nrm -rf /"\n',
    "broken": "cores = [\n",
}


def _profiles(root: Path) -> None:
    folder = root / "devices"
    folder.mkdir()
    for name, body in _PROFILES.items():  # each over the built-in rpi4 so that only the bad field is wrong
        (folder / f"{name}.toml").write_text('description = "x"\narch = "aarch64"\ncores = 4\nmemory_mb = 1\n'
                                             if "cores" not in body and "memory" not in body else
                                             'description = "x"\narch = "aarch64"\n'
                                             + ("memory_mb = 1\n" if "memory" not in body else "cores = 4\n"))
        with (folder / f"{name}.toml").open("a") as handle:
            handle.write(body)
    (folder / "latin1.toml").write_bytes('description = "caf\xe9"\n'.encode("latin-1"))


def _bench_runs(root: Path) -> None:
    item = {"id": "dense__onnx__t1", "bundle": "dense", "format": "onnx", "runtime": "onnxruntime", "threads": 1}
    good = {"run_id": "desktop-1", "device": {"name": "desktop"}, "machine": "x86_64", "emulated": False,
            "bundles": {"dense": {}}, "items": [item]}
    runs = {
        "trunc": '{"run_id": "desk',
        "list": "[1, 2]",
        "nobundles": json.dumps({k: v for k, v in good.items() if k != "bundles"}),
        "items-int": json.dumps({**good, "items": 5}),
        "item-missing": json.dumps({**good, "items": [{"id": "x"}]}),
        "raw-trunc": json.dumps(good),
        "raw-types": json.dumps(good),
        "binary": "\x00\x01\x02",
    }
    for name, text in runs.items():
        folder = root / "results" / name / "desktop-1"
        (folder / "raw").mkdir(parents=True)
        (folder / "bench.json").write_text(text)
    (root / "results" / "raw-trunc" / "desktop-1" / "raw" / "dense__onnx__t1__r1.json").write_text('{"latenc')
    (root / "results" / "raw-types" / "desktop-1" / "raw" / "dense__onnx__t1__r1.json").write_text(
        json.dumps({"latencies_s": "fast", "correctness": 3}))
    (root / "results" / "none").mkdir()
    state = root / "staterun" / "desktop-20240101-000000"
    state.mkdir(parents=True)
    (state / "state.json").write_text('{"status": ')


def _bundles(root: Path) -> None:
    manifest = {"format": "tsprune-edge/bundle", "version": 1}
    for folder, text in (("runs/bundles/dense", json.dumps(manifest)), ("badbundle/dense", "{"),
                         ("oldbundle/dense", json.dumps({"format": "tsprune-edge/bundle", "version": 0})),
                         ("listbundle/dense", "[]")):
        (root / folder).mkdir(parents=True)
        (root / folder / "manifest.json").write_text(text)
    art = {"file": "model.onnx", "sha256": "0" * 64}
    (root / "badsha" / "dense").mkdir(parents=True)
    (root / "badsha" / "dense" / "model.onnx").write_bytes(b"\x08\x01")
    (root / "badsha" / "dense" / "manifest.json").write_text(json.dumps({**manifest, "artifacts": {"onnx": art}}))
    (root / "badlist" / "dense").mkdir(parents=True)
    (root / "badlist" / "dense" / "manifest.json").write_text(json.dumps({**manifest, "artifacts": {"onnx": 5}}))
    (root / "nomanifest" / "dense").mkdir(parents=True)
    (root / "nomanifest" / "dense" / "model.onnx").write_bytes(b"\x08\x01")
    (root / "nomanifest" / "pruned").mkdir(parents=True)
    (root / "nomanifest" / "pruned" / "manifest.json").write_text(json.dumps(manifest))
    (root / "plusname" / "a+b").mkdir(parents=True)  # a good bundle but for its name
    (root / "plusname" / "a+b" / "manifest.json").write_text(json.dumps({**manifest, "artifacts": {}}))


# The sweep the `sweep` rows below resume (SWEEP's options), each with one damaged marker in cells/.
SWEEP = ("--models", "dlinear", "--methods", "structured", "--sparsities", "0.5", "--data", "synthetic", "--epochs",
         "1", "--format", "onnx")
_MARKERS = {
    "trunc": ("bench--dlinear", '{"cell": "bench--dlinear", "run_'),
    "binary": ("train--dlinear", "\udcff\x00\x01"),
    "list": ("variant--dlinear--dense", "[1, 2]"),
    "runid-int": ("bench--dlinear", json.dumps({"cell": "bench--dlinear", "run_id": 5, "bundles": []})),
    "runid-path": ("bench--dlinear", json.dumps({"cell": "bench--dlinear", "run_id": "../..", "bundles": []})),
    "bundles-str": ("bench--dlinear", json.dumps({"cell": "bench--dlinear", "run_id": "d-1", "bundles": "dense"})),
    "files-list": ("variant--dlinear--structured-0.5",
                   json.dumps({"cell": "variant--dlinear--structured-0.5", "files": ["a"]})),
    "other-cell": ("train--dlinear", json.dumps({"cell": "bench--dlinear", "files": {}})),
}


def _sweeps(root: Path) -> None:
    from tsprune_edge.sweep.spec import SPEC_FILE, SweepSpec

    spec = SweepSpec(models=("dlinear",), methods=("structured",), sparsities=(0.5,), data="synthetic", epochs=1,
                     formats=("onnx",))
    for name, (cell, text) in _MARKERS.items():
        (root / "sweeps" / name / "cells").mkdir(parents=True)
        (root / "sweeps" / name / SPEC_FILE).write_text(json.dumps(spec.to_json()))
        (root / "sweeps" / name / "cells" / f"{cell}.json").write_bytes(text.encode("utf-8", "surrogateescape"))


@pytest.fixture(scope="session")
def template(tmp_path_factory) -> Path:
    """The shared workspace, built once: a real small checkpoint and everything hostile around it."""
    from tsprune_edge.checkpoint import make_checkpoint, save_checkpoint
    from tsprune_edge.data import WindowSpec, load_forecast_data
    from tsprune_edge.models import create_model

    root = tmp_path_factory.mktemp("hostile")
    data = load_forecast_data("synthetic", WindowSpec(96, 48, 24))  # untrained weights: every case fails first
    model = create_model("dlinear", "small", pred_len=24, enc_in=len(data.input_columns),
                         c_out=len(data.target_columns), calendar_features=data.calendar_names)
    save_checkpoint(make_checkpoint(model, data.describe(), data.scaling(), {"epochs": 0}), root / CK)
    (root / "ck" / "metrics.json").write_text("{}")
    (root / "old" / "dense").mkdir(parents=True)  # the runs folder of an earlier export: checkpoints, no bundle
    shutil.copy(root / CK, root / "old" / "dense" / "model.pt")
    (root / "pruned").mkdir()
    (root / "pruned" / "model.pt").write_bytes((root / CK).read_bytes())
    (root / "pruned" / "pruning.json").write_text("{}")
    _damaged_checkpoints(root, root / CK)
    _csvs(root)
    _profiles(root)
    _bench_runs(root)
    _bundles(root)
    _sweeps(root)
    (root / "afile").write_text("a file, not a folder")
    (root / "emptydir").mkdir()
    (root / "sweepdir").mkdir()
    (root / "sweepdir" / "notes.txt").write_text("mine")
    (root / "report").mkdir()
    (root / "report" / "report.md").write_text("an earlier report")
    (root / "cache").mkdir()
    (root / "cache" / "ETTh1.csv").write_text("date,OT\n2020-01-01 00:00:00,1\n")  # not the verified file
    (root / "mirror").mkdir()
    (root / "mirror" / "electricity.csv").write_text("<html><head><title>404</title></head></html>\n")
    (root / "mirror" / "traffic.csv").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    (root / "mirror" / "ETTh1.csv").write_text("date,OT\n2020-01-01 00:00:00,1\n")
    return root


@pytest.fixture
def workspace(template, tmp_path, monkeypatch) -> Path:
    root = tmp_path / "ws"
    shutil.copytree(template, root, symlinks=True)
    monkeypatch.chdir(root)
    monkeypatch.setenv("TSPRUNE_EDGE_DATA_DIR", str(root / "cache"))
    monkeypatch.setenv("TSPRUNE_EDGE_DEVICES_DIR", str(root / "devices"))
    return root


def assert_refused(result, before: dict, after: dict, fragment: str) -> None:
    assert_one_line_error(result, fragment)
    changed = sorted(set(before.items()) ^ set(after.items()))
    assert not changed, f"the file tree changed: {changed[:5]}"


def T(*args: str) -> tuple[str, ...]:
    return args


# (arguments, a fragment the one line must hold). Paths are relative to the workspace; {ws} is its absolute path.
CASES: dict[str, list[tuple[tuple[str, ...], str]]] = {
    "parsing": [
        (T("train", "--epochs", "x"), "Invalid value for '--epochs'"),
        (T("train", "--epochs", "1.5"), "Invalid value for '--epochs'"),
        (T("train", "--batch-size", "many"), "Invalid value for '--batch-size'"),
        (T("train", "--lr", "fast"), "Invalid value for '--lr'"),
        (T("train", "--seed", "1e3"), "Invalid value for '--seed'"),
        (T("train", "--bogus"), "No such option: --bogus"),
        (T("train", "--epochs"), "requires an argument"),
        (T("nope"), "No such command 'nope'"),
        (T("evaluate"), "Missing argument"),
        (T("prune"), "Missing argument"),
        (T("devices", "show"), "Missing argument"),
        (T("devices", "nope"), "No such command 'nope'"),
        (T("data", "nope"), "No such command 'nope'"),
        (T("data", "fetch"), "Missing argument"),
        (T("data", "list", "extra"), "unexpected extra argument"),
        (T("models", "--bogus"), "No such option: --bogus"),
        (T("models", "extra"), "unexpected extra argument"),
        (T("bench", "--rounds", "x"), "Invalid value for '--rounds'"),
        (T("bench", "--min-time", "soon"), "Invalid value for '--min-time'"),
        (T("report", "--min-effect", "big"), "Invalid value for '--min-effect'"),
        (T("sweep", "--rounds", "1.5"), "Invalid value for '--rounds'"),
        (T("pipeline", "--epochs", "x"), "Invalid value for '--epochs'"),
        (T("export", "--sparsity", "half"), "Invalid value for '--sparsity'"),
        (T("prune", CK, "--steps", "two"), "Invalid value for '--steps'"),
        (T("devices", "check"), "Missing option '--device'"),
    ],
    "train": [
        (T("train", "--epochs", "0"), "--epochs must be at least 1"),
        (T("train", "--epochs", "-3"), "--epochs must be at least 1"),
        (T("train", "--batch-size", "0"), "--batch-size must be at least 1"),
        (T("train", "--batch-size", "-32"), "--batch-size must be at least 1"),
        (T("train", "--lr", "0"), "--lr must be above 0"),
        (T("train", "--lr", "-0.001"), "--lr must be above 0"),
        (T("train", "--lr", "nan"), "--lr must be a finite number"),
        (T("train", "--lr", "inf"), "--lr must be a finite number"),
        (T("train", "--seed", "-1"), "--seed must be in [0, 4.29497e+09]"),
        (T("train", "--seed", str(2**32)), "--seed must be in"),
        (T("train", "--seed", str(2**70)), "--seed must be in"),
        (T("train", "--pred-len", "0"), "--pred-len must be at least 1"),
        (T("train", "--pred-len", "-5"), "--pred-len must be at least 1, got -5"),
        (T("train", "--seq-len", "0"), "--seq-len must be at least 1"),
        (T("train", "--label-len", "-1"), "--label-len must be at least 0"),
        (T("train", "--label-len", "200"), "--label-len 200 is longer than --seq-len 96"),
        (T("train", "--model", "patchtst", "--seq-len", "8", "--label-len", "4"), "patchtst cannot take seq_len 8"),
        (T("train", "--model", "gpt9"), "unknown model 'gpt9'; available: "),
        (T("train", "--preset", "huge"), "no preset 'huge'; presets: paper, small"),
        (T("train", "--data", "ETTh9"), "unknown dataset 'ETTh9'; known: synthetic, ETTh1,"),
        (T("train", "--data", "absent.csv"), "absent.csv: no such file"),
        (T("train", "--data", "html.csv"), "first column must be `date`"),
        (T("train", "--data", "dup.csv"), "'OT' appears twice"),
        (T("train", "--data", "noname.csv"), "has no name"),
        (T("train", "--data", "huge.csv"), "does not scale to finite"),
        (T("train", "--data", "latin1.csv"), "not a UTF-8 text CSV"),
        (T("train", "--data", "empty.csv"), "the file is empty"),
        (T("train", "--data", "nodate.csv"), "first column must be `date`, found 'time'"),
        (T("train", "--data", "abc.csv"), "abc.csv: line 7, column 'a': 'abc' is not a number"),
        (T("train", "--data", "cell-empty.csv"), "cell-empty.csv: line 5, column 'OT': '' is not a number"),
        *[(T("train", "--data", f"cell-{name}.csv"), f"line 5, column 'OT' is '{cell}'; fill or drop missing values")
          for name, cell in _CELLS.items() if cell],
        (T("train", "--data", "short.csv"), "short.csv has too few rows for seq_len 96 + pred_len 96"),
        (T("train", "--data", "nan.csv"), "fill or drop missing values"),
        (T("train", "--data", "ragged.csv"), "cells, the header has 3"),
        (T("train", "--data", "data.csv", "--target", "nope"), "target column 'nope'"),
        (T("train", "--out", "afile/sub"), "cannot write to afile/sub: "),
        (T("train", "--out", "afile"), "it is a file, not a folder"),
        (T("train", "--out", "/proc/tsprune"), "/proc is a system folder"),
        (T("train", "--out", "/sys/kernel/x"), "/sys is a system folder"),
        (T("train", "--out", "ck"), "ck/model.pt exists already; pass --force"),
        (T("train", "--data", "data.csv", "--out", "data.csv"), "it is a file, not a folder"),
        (T("train", "--data", "dupdates.csv", "--strict-dates"), "--strict-dates refuses them"),
    ],
    "evaluate": [
        (T("evaluate", CK, "--out", CK), "would write over the input"),
        (T("evaluate", CK, "--out", CK, "--force"), "would write over the input"),
        (T("evaluate", CK, "--out", "ck/metrics.json"), "exists already; pass --force"),
        (T("evaluate", CK, "--out", "ck"), "is a folder"),
        (T("evaluate", CK, "--out", "afile/x.json"), "is a file, not a folder"),
        (T("evaluate", CK, "--out", "/proc/x.json"), "/proc is a system folder"),
        (T("evaluate", CK, "--split", "holdout"), "split must be one of"),
        (T("evaluate", "absent/model.pt"), "no such checkpoint"),
        *[(T("evaluate", f"{name}/model.pt"), f"{name}/model.pt is a damaged tsprune-edge checkpoint (")
          for name in ("ck_missing_tensor", "ck_wrong_shape", "ck_extra_tensor", "ck_no_state", "ck_state_list",
                       "ck_config_str", "ck_no_data_keys", "ck_bad_model", "ck_model_int", "ck_bad_config",
                       "ck_pruning_str")],
        (T("evaluate", "ck_version/model.pt"), "ck_version/model.pt is checkpoint version 99; this tsprune-edge reads"),
        *[(T("evaluate", f"{name}/model.pt"), f"{name}/model.pt is not a tsprune-edge checkpoint (")
          for name in ("ck_text", "ck_bytes", "ck_truncated", "ck_foreign", "ck_pickle")],
    ],
    "prune": [
        (T("prune", CK, "--out", "ck"), "would write over the input"),
        (T("prune", CK, "--out", "ck", "--force"), "would write over the input"),
        (T("prune", CK, "--out", "pruned"), "pruned/model.pt exists already; pass --force"),
        (T("prune", CK, "--sparsity", "1"), "--sparsity must be in [0, 1)"),
        (T("prune", CK, "--sparsity", "1.5"), "--sparsity must be in [0, 1)"),
        (T("prune", CK, "--sparsity", "-0.1"), "--sparsity must be in [0, 1)"),
        (T("prune", CK, "--sparsity", "nan"), "--sparsity must be a finite number"),
        (T("prune", CK, "--finetune-epochs", "-1"), "--finetune-epochs must be 0 or more"),
        (T("prune", CK, "--lr", "-1"), "--lr must be above 0"),
        (T("prune", CK, "--lr", "nan"), "--lr must be a finite number"),
        (T("prune", CK, "--steps", "0"), "--steps must be at least 1"),
        (T("prune", CK, "--round-to", "0"), "--round-to must be at least 1"),
        (T("prune", CK, "--round-to", "-8"), "--round-to must be at least 1"),
        (T("prune", CK, "--seed", "-5"), "--seed must be in"),
        (T("prune", CK, "--method", "magic"), "unknown pruning method 'magic'"),
        (T("prune", CK, "--method", "nm", "--nm", "x"), "--nm takes N:M"),
        (T("prune", CK, "--method", "nm", "--nm", "4:2"), "needs 1 <= N < M"),
        (T("prune", CK, "--ranking", "sideways"), "--ranking must be uniform or global"),
        (T("prune", CK, "--gradual", "--finetune-epochs", "1"), "--gradual ramps"),
        (T("prune", "absent/model.pt", "--out", "p"), "no such checkpoint"),
        (T("prune", "ck_wrong_shape/model.pt", "--out", "p"), "damaged tsprune-edge checkpoint"),
        (T("prune", "ck_text/model.pt", "--out", "p"), "is not a tsprune-edge checkpoint"),
        (T("prune", CK, "--out", "afile/p"), "is a file, not a folder"),
        (T("prune", CK, "--out", "/proc/p"), "/proc is a system folder"),
        (T("prune", CK, "--dims", "heads,depth", "--out", "p"), "--dims takes a comma-separated subset"),
        (T("prune", CK, "--dims", "", "--out", "p"), "--dims takes a comma-separated subset"),
        (T("prune", CK, "--dims", ",", "--out", "p"), "--dims takes a comma-separated subset"),
        (T("prune", CK, "--dims", "heads,ffn,width", "--width-sparsity", "nan", "--out", "p"),
         "--width-sparsity must be a finite number"),
        (T("prune", CK, "--dims", "heads,ffn,width", "--width-sparsity", "1", "--out", "p"),
         "--width-sparsity must be in [0, 1)"),
        (T("prune", CK, "--dims", "heads,ffn,width", "--width-sparsity", "-0.1", "--out", "p"),
         "--width-sparsity must be in [0, 1)"),
        (T("prune", CK, "--width-sparsity", "0.5", "--out", "p"), "--width-sparsity needs width among --dims"),
        (T("prune", CK, "--round-to", "nan"), "Invalid value for '--round-to'"),
    ],
    "export": [
        (T("export", "--baselines", "sparsetsf,gpt9", "--out", "b"),
         "unknown baseline 'gpt9' in --baselines; registered models: autoformer, crossformer, dlinear"),
        (T("export", "--baselines", "fits:huge", "--out", "b"), "baseline fits has no preset 'huge'; write fits"),
        (T("export", "--checkpoint", CK, "--baselines", "dlinear", "--baseline-cache", "data.csv", "--out", "b"),
         "cannot write to data.csv: it is a file, not a folder; choose another --baseline-cache"),
        (T("export", "--checkpoint", CK, "--out", "old", "--format", "onnx"), "old/dense exists and is not an export"),
        (T("export", "--checkpoint", CK, "--out", "old", "--format", "onnx", "--force"), "is not an export"),
        (T("export", "--checkpoint", CK, "--format", "onnx"), "holds a bundle already"),
        (T("export", "--runs", "old", "--out", "e", "--format", "onnx"), "old/dense/model.pt exists already"),
        (T("export", "--checkpoint", CK, "--out", "x", "--runs", "x", "--format", "onnx"), "would share"),
        (T("export", "--sparsity", "1"), "--sparsity must be in [0, 1)"),
        (T("export", "--sparsity", "-0.5"), "--sparsity must be in [0, 1)"),
        (T("export", "--sparsity", "nan"), "--sparsity must be a finite number"),
        (T("export", "--epochs", "0"), "--epochs must be at least 1"),
        (T("export", "--finetune-epochs", "-1"), "--finetune-epochs must be at least 0"),
        (T("export", "--format", "pdf"), "unknown format pdf"),
        (T("export", "--format", ","), "unknown format (none)"),
        (T("export", "--quantize", "int3"), "unknown quantization 'int3'"),
        (T("export", "--method", "magic"), "unknown pruning method 'magic'"),
        (T("export", "--method", ","), "--method needs at least one pruning method"),
        (T("export", "--checkpoint", "absent.pt", "--format", "onnx", "--out", "e", "--runs", "r"),
         "no such checkpoint"),
        (T("export", "--checkpoint", "ck_missing_tensor/model.pt", "--format", "onnx", "--out", "e", "--runs", "r"),
         "damaged tsprune-edge checkpoint"),
        (T("export", "--checkpoint", CK, "--model", "patchtst", "--format", "onnx", "--out", "e", "--runs", "r"),
         "holds a dlinear model, not patchtst"),
        (T("export", "--out", "/proc/e"), "/proc is a system folder"),
        (T("export", "--out", "afile"), "it is a file, not a folder"),
        (T("export", "--runs", "afile/r", "--out", "e"), "is a file, not a folder"),
        (T("export", "--onnx-opset", "12"), "--onnx-opset takes 13 to"),
        (T("export", "--onnx-opset", "99"), "--onnx-opset takes 13 to"),
        (T("export", "--onnx-opset", "0"), "--onnx-opset takes 13 to"),
        (T("export", "--onnx-opset", "17.5"), "Invalid value for '--onnx-opset'"),
        (T("export", "--onnx-opset", "new"), "Invalid value for '--onnx-opset'"),
        (T("export", "--round-to", "0"), "--round-to must be at least 1"),
        (T("export", "--round-to", "nan"), "Invalid value for '--round-to'"),
        (T("export", "--dims", "heads,depth", "--out", "e", "--runs", "r"), "--dims takes a comma-separated subset"),
        (T("export", "--width-sparsity", "0.5", "--out", "e", "--runs", "r"), "--width-sparsity needs width among"),
        (T("export", "--width-sparsity", "1", "--dims", "width"), "--width-sparsity must be in [0, 1)"),
        (T("export", "--method", "structured,unstructured", "--dims", "heads,ffn,width"),
         "--dims and --width-sparsity apply to --method structured"),
        (T("export", "--checkpoint", CK, "--dims", "heads,ffn,width", "--format", "onnx", "--out", "e", "--runs", "r"),
         "dlinear has no model width d_model to prune"),
        (T("export", "--data", "dupdates.csv", "--strict-dates", "--out", "e", "--runs", "r"),
         "--strict-dates refuses them"),
    ],
    "bench": [
        (T("bench", "--rounds", "0"), "--rounds must be at least 1"),
        (T("bench", "--rounds", "-2"), "--rounds must be at least 1"),
        (T("bench", "--min-time", "0"), "--min-time must be above 0"),
        (T("bench", "--min-time", "-1"), "--min-time must be above 0"),
        (T("bench", "--min-time", "nan"), "--min-time must be a finite number"),
        (T("bench", "--min-time", "inf"), "--min-time must be a finite number"),
        (T("bench", "--min-iters", "0"), "--min-iters must be at least 1"),
        (T("bench", "--cooldown", "-1"), "--cooldown must be at least 0"),
        (T("bench", "--cooldown", "nan"), "--cooldown must be a finite number"),
        (T("bench", "--threads", "0"), "--threads must be in [1, 1024]"),
        (T("bench", "--threads", "1,-4"), "--threads must be in [1, 1024]"),
        (T("bench", "--threads", "100000"), "--threads must be in [1, 1024]"),
        (T("bench", "--threads", "one"), "--threads takes comma-separated integers"),
        (T("bench", "--runtime", "tensorrt"), "unknown runtime tensorrt"),
        (T("bench", "--device", "toaster"), "unknown device 'toaster'"),
        (T("bench", "--artifacts", "absent"), "no export bundles under absent (no such folder)"),
        (T("bench", "--artifacts", "emptydir"), "no export bundles under emptydir"),
        (T("bench", "--artifacts", "badbundle"), "is not an export bundle"),
        (T("bench", "--artifacts", "oldbundle"), "is not a version 1"),
        (T("bench", "--artifacts", "nomanifest"), "nomanifest/dense is not an export bundle (no manifest.json)"),
        (T("bench", "--artifacts", "afile"), "is not a folder"),
        (T("bench", "--artifacts", "badsha"), "model.onnx missing or not what manifest.json records"),
        (T("bench", "--artifacts", "badlist"), "does not list its files as a bundle does"),
        (T("bench", "--results", "afile/r"), "is a file, not a folder"),
        (T("bench", "--results", "/proc/r"), "/proc is a system folder"),
        (T("bench", "--results", "runs/bundles/dense"), "would write over the input"),
        (T("bench", "--host", "pi@board"), "is measured on this machine; drop --host"),
        (T("bench", "--device", "rpi4"), "is a remote board: pass --host"),
        (T("bench", "--resume", "--results", "emptydir"), "nothing to resume"),
        (T("bench", "--resume", "--results", "staterun"), "damaged or not from this tsprune-edge"),
        (T("bench", "--device", "zero-cores"), "cores must be a positive integer"),
        (T("bench", "--device", "rpi4", "--host", "pi@x; touch pwned"), "hostname contains invalid characters"),
        (T("bench", "--device", "rpi4", "--host", "-oProxyCommand=touch pwned"), "bad SSH destination"),
        (T("bench", "--device", "rpi4", "--host", "$(touch pwned)"), "hostname contains invalid characters"),
        (T("bench", "--device", "newline-python"), "python must be a one-line string"),
        (T("bench", "--max-rounds", "4"), "--max-rounds (4) must be at least --rounds (5)"),
        (T("bench", "--rounds", "3", "--max-rounds", "2"), "--max-rounds (2) must be at least --rounds (3)"),
        (T("bench", "--max-rounds", "0"), "--max-rounds"),
        (T("bench", "--max-rounds", "-1"), "--max-rounds"),
        (T("bench", "--artifacts", "plusname"), "plusname/a+b has a name the board agent refuses"),
    ],
    "devices": [
        *[(T("devices", "show", name), f"{name}.toml") for name in _PROFILES],
        (T("devices", "show", "latin1"), "not a readable TOML profile"),
        (T("devices", "show", "toaster"), "unknown device 'toaster'"),
        (T("devices", "list"), ".toml"),
        (T("devices", "check", "--device", "toaster"), "unknown device 'toaster'"),
        (T("devices", "check", "--device", "rpi4"), "is a remote board: pass --host"),
        (T("devices", "check", "--device", "desktop", "--host", "x"), "drop --host"),
        (T("devices", "check", "--device", "round-zero"), "round_to must be a positive integer"),
        (T("devices", "setup", "--device", "toaster"), "unknown device 'toaster'"),
        (T("devices", "setup", "--device", "rpi4"), "is a remote board: pass --host"),
        (T("devices", "setup", "--device", "rpi4", "--host", "pi@x", "--port", "0"), "--port must be in [1, 65535]"),
        (T("devices", "setup", "--device", "desktop", "--wheel", "absent.whl"), "--wheel absent.whl is not a file"),
    ],
    "report": [
        (T("report", "absent"), "no finished bench run in absent"),
        (T("report", "results/none"), "no finished bench run"),
        (T("report", "emptydir"), "no finished bench run"),
        *[(T("report", f"results/{name}", "--out", "rep"), "damaged or not from this tsprune-edge")
          for name in ("trunc", "items-int", "item-missing", "raw-trunc", "raw-types", "binary")],
        (T("report", "results/nobundles", "--out", "rep"), "has no bundle facts"),
        (T("report", "results/list", "--out", "rep"), "results/list/desktop-1/bench.json"),
        (T("report", "results/raw-trunc", "--min-effect", "1"), "--min-effect must be in [0, 1)"),
        (T("report", "results/raw-trunc", "--min-effect", "-0.1"), "--min-effect must be in [0, 1)"),
        (T("report", "results/raw-trunc", "--min-effect", "nan"), "--min-effect must be in [0, 1)"),
        (T("report", "results/raw-trunc", "--max-mse-rise", "-0.01"), "--max-mse-rise -0.01 is not a fraction >= 0"),
        (T("report", "results/raw-trunc", "--max-mse-rise", "nan"), "--max-mse-rise nan is not a fraction >= 0"),
        (T("report", "results/raw-trunc", "--max-mse-rise", "inf"), "--max-mse-rise inf is not a fraction >= 0"),
        (T("report", "--max-mse-rise", "lots"), "Invalid value for '--max-mse-rise'"),
        (T("report", "results/raw-trunc", "--out", "afile/r"), "is a file, not a folder"),
        (T("report", "results/raw-trunc", "--out", "results/raw-trunc/desktop-1/rep"), "would write over the input"),
        (T("report", "results/raw-trunc", "--out", "report"), "report/report.md exists already; pass --force"),
        (T("report", "results/raw-trunc", "--out", "/sys/r"), "/sys is a system folder"),
    ],
    "fit": [
        (T("fit", CK, "--out", "f"), "give exactly one of --budget-ms"),
        (T("fit", CK, "--speedup", "2", "--baselines", "sparsetsf,gpt9", "--out", "f"),
         "unknown baseline 'gpt9' in --baselines; registered models: autoformer, crossformer, dlinear"),
        (T("fit", CK, "--speedup", "2", "--baselines", "dlinear", "--baseline-cache", "data.csv", "--out", "f"),
         "cannot write to data.csv: it is a file, not a folder; choose another --baseline-cache"),
        (T("fit", CK, "--budget-ms", "1", "--speedup", "2", "--out", "f"), "give exactly one of --budget-ms"),
        (T("fit", CK, "--budget-ms", "0", "--out", "f"), "--budget-ms must be above 0"),
        (T("fit", CK, "--budget-ms", "-0.5", "--out", "f"), "--budget-ms must be above 0"),
        (T("fit", CK, "--budget-ms", "nan", "--out", "f"), "--budget-ms must be a finite number"),
        (T("fit", CK, "--speedup", "1", "--out", "f"), "asks for nothing faster than dense"),
        (T("fit", CK, "--speedup", "0.5", "--out", "f"), "asks for nothing faster than dense"),
        (T("fit", CK, "--speedup", "inf", "--out", "f"), "--speedup must be a finite number"),
        (T("fit", CK, "--speedup", "2", "--runtime", "tensorrt", "--out", "f"), "unknown runtime 'tensorrt'"),
        (T("fit", CK, "--speedup", "2", "--device", "jetson-nano", "--host", "pi@nano", "--runtime", "tflite",
           "--out", "f"), "jetson-nano has no runtime for tflite artifacts"),
        (T("fit", CK, "--speedup", "2", "--device", "toaster", "--out", "f"), "unknown device 'toaster'"),
        (T("fit", CK, "--speedup", "2", "--threads", "0", "--out", "f"), "--threads must be in [1, 1024]"),
        (T("fit", CK, "--speedup", "2", "--finetune-epochs", "-1", "--out", "f"),
         "--finetune-epochs must be at least 0"),
        (T("fit", CK, "--speedup", "2", "--max-rounds", "0", "--out", "f"), "--max-rounds must be at least 1"),
        (T("fit", CK, "--speedup", "2", "--rounds", "1", "--out", "f"), "--rounds must be at least 2"),
        (T("fit", CK, "--speedup", "2", "--out", "afile/f"), "is a file, not a folder"),
        (T("fit", CK, "--speedup", "2", "--out", "/proc/f"), "/proc is a system folder"),
        (T("fit", CK, "--speedup", "2", "--out", "sweepdir"), "holds other files and no fit.json"),
        (T("fit", CK, "--speedup", "2", "--cache", "afile", "--out", "f"), "it is a file, not a folder"),
        (T("fit", "ck_text/model.pt", "--speedup", "2", "--out", "f"), "ck_text/model.pt"),
        (T("fit", "missing/model.pt", "--speedup", "2", "--out", "f"), "missing/model.pt"),
        (T("fit", CK, "--speedup", "2", "--uniform", "0.5,1.5", "--out", "f"), "--uniform takes ratios in (0, 1)"),
        (T("fit", CK, "--speedup", "2", "--uniform", "half", "--out", "f"), "--uniform takes comma-separated ratios"),
        (T("fit"), "Missing argument"),
    ],
    "sweep": [
        (T("sweep", "--device", "toaster", "--data", "synthetic"), "unknown device 'toaster'"),
        (T("sweep", "--device", "zero-cores", "--data", "synthetic"), "cores must be a positive integer"),
        (T("sweep", "--rounds", "0"), "--rounds must be at least 1"),
        (T("sweep", "--data", "synthetic", "--baselines", "dlinear,gpt9"), "unknown baseline 'gpt9' in --baselines"),
        (T("sweep", "--round-to", "0", "--data", "synthetic"), "--round-to must be at least 1"),
        (T("sweep", "--epochs", "0"), "--epochs must be at least 1"),
        (T("sweep", "--finetune-epochs", "-1"), "--finetune-epochs must be at least 0"),
        (T("sweep", "--min-time", "0"), "--min-time must be above 0"),
        (T("sweep", "--min-time", "nan"), "--min-time must be a finite number"),
        (T("sweep", "--min-iters", "0"), "--min-iters must be at least 1"),
        (T("sweep", "--workers", "0"), "--workers must be at least 1"),
        (T("sweep", "--threads", "0"), "--threads must be in [1, 1024]"),
        (T("sweep", "--sparsities", "half"), "--sparsities takes comma-separated numbers"),
        (T("sweep", "--sparsities", "0"), "--sparsities must be in (0, 1)"),
        (T("sweep", "--sparsities", "1"), "--sparsities must be in (0, 1)"),
        (T("sweep", "--sparsities", "0.5,nan"), "--sparsities must be a finite number"),
        (T("sweep", "--device", "rpi4", "--data", "synthetic"), "is a remote board: pass --host"),
        (T("sweep", "--host", "pi@board", "--data", "synthetic"), "drop --host"),
        (T("sweep", "--models", "gpt9"), "unknown model 'gpt9'"),
        (T("sweep", "--methods", "magic"), "unknown pruning method 'magic'"),
        (T("sweep", "--format", "pdf"), "unknown format pdf"),
        (T("sweep", "--preset", "huge"), "no preset 'huge'"),
        (T("sweep", "--ray", "127.0.0.1:1", "--data", "synthetic", "--out", "sw"), "no Ray cluster answers at"),
        (T("sweep", "--ray", "not an address", "--out", "sw"), "--ray takes the cluster's HOST:PORT"),
        (T("sweep", "--ray", "10.0.0.5:99999", "--out", "sw"), "--ray takes the cluster's HOST:PORT"),
        (T("sweep", "--ray", "127.0.0.1:1", "--workers", "2"), "pass one of them"),
        (T("sweep", "--out", "sweepdir"), "not a sweep folder"),
        (T("sweep", "--out", "afile/s"), "is a file, not a folder"),
        (T("sweep", "--min-effect", "2"), "--min-effect must be in [0, 1)"),
        (T("sweep", "--width-matched", "--methods", "unstructured"), "--width-matched prunes the width"),
        (T("sweep", "--max-rounds", "0"), "--max-rounds must be at least 1"),
        (T("sweep", "--rounds", "3", "--max-rounds", "2"), "--max-rounds (2) must be at least --rounds (3)"),
        (T("sweep", "--data", "dupdates.csv", "--strict-dates", "--out", "sw"), "--strict-dates refuses them"),
        *[(T("sweep", *SWEEP, "--out", f"sweeps/{name}"), f"sweeps/{name}/cells/{cell}.json is damaged")
          for name, (cell, _) in _MARKERS.items()],
    ],
    "pipeline": [
        (T("pipeline", "--baselines", "gpt9", "--out", "pl"), "unknown baseline 'gpt9' in --baselines"),
        (T("pipeline", "--data", "rows1000.csv", "--baselines", "sparsetsf:paper", "--out", "pl"),
         "baseline sparsetsf:paper cannot take rows1000.csv: rows1000.csv has too few rows for seq_len 720 + pred_len "
         "96: its train split holds 700 rows, needs at least 816; drop sparsetsf:paper from --baselines, or "
         "sparsetsf at the run's seq_len, or give more rows"),
        (T("pipeline", "--rounds", "0"), "--rounds must be at least 1"),
        (T("pipeline", "--epochs", "0"), "--epochs must be at least 1"),
        (T("pipeline", "--sparsity", "0"), "--sparsity must be in (0, 1)"),
        (T("pipeline", "--sparsity", "1"), "--sparsity must be in (0, 1)"),
        (T("pipeline", "--sparsity", "nan"), "--sparsity must be a finite number"),
        (T("pipeline", "--finetune-epochs", "-1"), "--finetune-epochs must be at least 0"),
        (T("pipeline", "--model", "gpt9"), "unknown model 'gpt9'"),
        (T("pipeline", "--out", "afile/p"), "is a file, not a folder"),
        (T("pipeline", "--out", "/proc/p"), "/proc is a system folder"),
        (T("pipeline", "--out", "old"), "old/dense exists already; pass --force"),
        (T("pipeline", "--data", "data.csv", "--out", "data.csv"), "it is a file, not a folder"),
        (T("pipeline", "--data", "dupdates.csv", "--strict-dates", "--out", "pl"), "--strict-dates refuses them"),
        (T("pipeline", "--round-to", "0", "--out", "pl"), "--round-to must be at least 1"),
        (T("pipeline", "--dims", "heads,depth", "--out", "pl"), "--dims takes a comma-separated subset"),
        (T("pipeline", "--method", "unstructured", "--dims", "width"), "--dims and --width-sparsity apply to --method"),
    ],
    "data": [
        (T("data", "fetch", "ETTh9"), "unknown dataset 'ETTh9'"),
        (T("data", "fetch", "ETTh1"), "exists and is not the verified ETTh1; pass --force"),
        (T("data", "fetch", "electricity", "--mirror", "not a url"), "is not a URL"),
        (T("data", "fetch", "electricity", "--mirror", "ftp://host/x"), "is not a URL"),
        (T("data", "fetch", "electricity", "--mirror", "http://"), "is not a URL"),
        (T("data", "fetch", "electricity"), "has no direct download"),
        (T("data", "fetch", "electricity", "--mirror", "file://{ws}/mirror", "--dest", "got"),
         "is not a forecasting CSV"),
        (T("data", "fetch", "traffic", "--mirror", "file://{ws}/mirror", "--dest", "got"), "not a UTF-8 text CSV"),
        (T("data", "fetch", "ETTh1", "--mirror", "file://{ws}/mirror", "--dest", "got"), "has sha256"),
        (T("data", "fetch", "electricity", "--mirror", "file://{ws}/emptydir", "--dest", "got"),
         "check the mirror's URL"),
        (T("data", "fetch", "ETTh1", "--dest", "afile/d"), "is a file, not a folder"),
        (T("data", "fetch", "ETTh1", "--dest", "/proc/d"), "/proc is a system folder"),
    ],
}

ALL = [(f"{group}-{i}", args, fragment) for group, cases in CASES.items() for i, (args, fragment) in enumerate(cases)]


def test_every_command_has_bad_input_rows():
    """Every command the CLI registers (read from the app, so a new command fails here until it has a row)."""
    paths = command_paths()
    assert len(ALL) >= 150, len(ALL)
    missing = sorted(" ".join(path) for path in paths - {command_of(args, paths) for _, args, _ in ALL})
    assert not missing, f"no CASES row for: {missing}"


@pytest.mark.parametrize(("args", "fragment"), [c[1:] for c in ALL], ids=[c[0] for c in ALL])
def test_hostile_input_is_one_line_and_changes_nothing(cli, workspace, args, fragment):
    args = [a.replace("{ws}", str(workspace)) for a in args]
    before = snapshot(workspace)
    result = cli(*args)
    assert_refused(result, before, snapshot(workspace), fragment)


# The three data-loss cases of issue 18: each overwrote or deleted a user's file with exit 0 before.

def test_evaluate_out_is_the_checkpoint_itself(cli, workspace):
    before = (workspace / CK).read_bytes()
    result = cli("evaluate", CK, "--out", CK)
    assert result.code == 2 and "would write over the input" in result.err
    assert (workspace / CK).read_bytes() == before


def test_prune_out_is_the_checkpoints_folder(cli, workspace):
    before = (workspace / CK).read_bytes()
    result = cli("prune", CK, "--out", "ck", "--finetune-epochs", "0")
    assert result.code == 2 and "would write over the input" in result.err
    assert (workspace / CK).read_bytes() == before and not (workspace / "ck" / "pruning.json").exists()


def test_export_out_holding_checkpoints(cli, workspace):
    before = (workspace / "old" / "dense" / "model.pt").read_bytes()
    result = cli("export", "--checkpoint", CK, "--out", "old", "--format", "onnx", "--runs", "r")
    assert result.code == 2 and "is not an export bundle" in result.err
    assert (workspace / "old" / "dense" / "model.pt").read_bytes() == before
    assert sorted(p.name for p in (workspace / "old").iterdir()) == ["dense"]


def test_force_lets_evaluate_replace_its_own_earlier_output(cli, workspace):
    (workspace / "ck" / "evaluation-test.json").write_text("{}")
    refused = cli("evaluate", CK)
    assert refused.code == 2 and "--force" in refused.err
    result = cli("evaluate", CK, "--force")
    assert result.code == 0, result.err
    written = json.loads((workspace / "ck" / "evaluation-test.json").read_text())
    assert written["model"] == "dlinear" and written["split"] == "test" and written["mse"] > 0


def test_a_dead_ray_address_fails_within_a_minute(cli, workspace):
    import time

    started = time.perf_counter()
    result = cli("sweep", "--ray", "127.0.0.1:1", "--data", "synthetic", "--out", "sw")
    assert result.code == 2 and result.err.startswith("error: no Ray cluster answers at 127.0.0.1:1")
    assert time.perf_counter() - started < 60
    assert not (workspace / "sw").exists()


def test_ctrl_c_prints_one_line_and_removes_what_the_run_created(cli, workspace):
    """A real SIGINT once export has pruned (its checkpoint written) and is exporting: one line, exit 130, and the
    folders the run made, with the pruned checkpoint of the unfinished run, are gone; the input stays."""
    import signal
    import threading
    import time

    pruned = workspace / "r" / "unstructured-0.5" / "model.pt"

    def interrupt_once_pruned() -> None:
        deadline = time.monotonic() + 120
        while not pruned.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGINT)

    before = (workspace / CK).read_bytes()
    threading.Thread(target=interrupt_once_pruned, daemon=True).start()
    result = cli("export", "--checkpoint", CK, "--method", "unstructured", "--finetune-epochs", "0", "--format",
                 "onnx", "--out", "e", "--runs", "r")
    assert result.code == 130, result.err
    errors = [line for line in result.err.splitlines() if line.startswith("error:")]  # after the progress lines
    assert len(errors) == 1 and result.err.splitlines()[-1].startswith("error: interrupted; removed"), result.err
    assert "Traceback" not in result.err
    assert not (workspace / "e").exists() and not (workspace / "r").exists()
    assert (workspace / CK).read_bytes() == before
