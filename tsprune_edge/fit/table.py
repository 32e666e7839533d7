"""The latency table: probe models of one dense model measured on the target, cached per board, runtime, threads,
model and shape so that another fit (another budget) measures nothing new.

Probes are the dense model pruned structurally (no fine-tuning: weights do not change time) at a small design of
uniform ratios, heads, FFN neurons and width varied apart so the predictor can tell their costs apart, plus the
smallest prunable model (it anchors the fast end and says what no budget below it can reach). All of them, dense
and the per-call probe are benched in ONE interleaved run.

Cache: `<cache>/<device>-<runtime>-t<threads>-<model>-<key hash>-<identity hash>.json`, default
`~/.cache/tsprune-edge/latency`. The key holds what decides time: the board (profile and host), runtime, threads,
model and its config (widths, layers, seq_len, pred_len, variables), the export level, round_to and the probe design;
the identity is the board's as fit/identity.py asks it before the cache is read (runtime and its version, CPU model,
board model, machine, OS, Python, emulation, machine id, SSH host key). A table of the same key under another
identity is kept, not used: one line names what differs and the table is measured again. The table also records
the run-to-run scatter of its run (fit/met.py's headroom).
Weights are not in the key, nor the bench's rounds (the table records them). While a table is being measured
its work folder `<stem>.work/` keeps the bundles and the bench run, so an interrupted measurement resumes where
it stopped (finished probes are not measured again; a run that finished is read back); once done, the bench run is
kept beside the table (`<stem>.run/`) and the bundles are removed. A damaged table is set aside (renamed, with its
run) and measured again.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from rich.console import Console

from tsprune_edge.atomic import write_json_atomic
from tsprune_edge.checkpoint import load_checkpoint, make_checkpoint, save_checkpoint
from tsprune_edge.export.bundle import DENSE, MANIFEST, write_bundles
from tsprune_edge.fit.cache_files import read_entry, set_aside
from tsprune_edge.fit.choice import pruned_copy, pruner_fields
from tsprune_edge.fit.identity import board_identity
from tsprune_edge.fit.measure import Target, run_scatter
from tsprune_edge.fit.resume import measured
from tsprune_edge.fit.space import FEATURES, Space, Widths
from tsprune_edge.prune.analysis import count_macs

TABLE_VERSION = 2  # 2: the board's identity in the name, the scatter recorded
DEFAULT_CACHE = Path.home() / ".cache" / "tsprune-edge" / "latency"
# (heads, ffn, width) ratios: each dimension alone, pairs and all three, at two depths.
PROBE_DESIGN = ((0.5, 0.0, 0.0), (0.0, 0.5, 0.0), (0.0, 0.0, 0.5), (0.75, 0.75, 0.0), (0.5, 0.5, 0.5),
                (0.25, 0.75, 0.25), (0.75, 0.25, 0.5), (0.25, 0.25, 0.75))
SMALLEST = "probe-smallest"


def cache_key(checkpoint_path: Path, target: Target, space: Space) -> dict:
    checkpoint = load_checkpoint(checkpoint_path)
    profile = target.profile
    return {"version": TABLE_VERSION, "device": profile.to_dict(), "host": target.host, "runtime": target.runtime,
            "threads": target.thread_count, "model": checkpoint.model_name, "config": checkpoint.config,
            "export": target.export_request().__dict__, "round_to": space.round_to,
            "design": [list(r) for r in PROBE_DESIGN]}


def table_path(cache: Path, key: dict, identity: dict) -> Path:
    """`<device>-<runtime>-t<threads>-<model>-<key hash>-<identity hash>.json`: the same key on another board or
    runtime version is another table, kept beside it (going back to the first reuses it)."""
    return Path(cache) / f"{_stem(key)}-{_digest(identity)}.json"


def _stem(key: dict) -> str:
    return f"{key['device']['name']}-{key['runtime']}-t{key['threads']}-{key['model']}-{_digest(key)}"


def _digest(value: dict) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:12]


def elsewhere(cache: Path, key: dict, identity: dict) -> str | None:
    """Why the newest table of this key measured under another identity is not used, as `what was, now what is`
    for each part that differs (None: there is none)."""
    others = sorted((p for p in Path(cache).glob(f"{_stem(key)}-*.json") if p != table_path(cache, key, identity)),
                    key=lambda p: p.stat().st_mtime)
    for other in reversed(others):
        try:
            was = json.loads(other.read_text())["identity"]
            differ = [f"{name} {was[name] if name in was else 'not recorded'}, now {value}"
                      for name, value in identity.items() if was.get(name) != value]
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue
        return f"{other.name} was measured elsewhere ({'; '.join(differ)})"
    return None


def probe_widths(space: Space) -> dict[str, Widths]:
    """Probe name -> widths: dense, the design (duplicates after rounding dropped) and the smallest model."""
    probes = {DENSE: space.dense()}
    for heads, ffn, width in PROBE_DESIGN:
        widths = space.uniform(heads, ffn, width if space.d_model else 0.0)
        if widths not in probes.values():
            probes[f"probe-h{heads:g}-f{ffn:g}-w{width:g}"] = widths
    if space.smallest() not in probes.values():
        probes[SMALLEST] = space.smallest()
    return probes


def latency_table(checkpoint_path: Path, target: Target, space: Space, cache: Path, console: Console) -> dict:
    """The cached table for this key (silently: a budget out of reach is then refused in one line), measured now if
    there is none; returned with `path` and `reused`."""
    key = cache_key(checkpoint_path, target, space)
    identity = board_identity(target)
    path = table_path(cache, key, identity)
    table = read_entry(path, lambda stored: _checked(stored, key, identity), "latency table", console)
    if table is not None:
        return {**table, "path": str(path), "reused": True}
    other = elsewhere(cache, key, identity)
    if other:
        console.print(f"latency table: {other}: not this board's timings, measuring them again")
    keep = path.with_suffix(".run")  # the bench run stays as the table's evidence; bundles go
    if keep.exists():  # the run of a table set aside goes aside with it
        set_aside(keep, None, console)
    work = path.with_suffix(".work")
    probes = probe_widths(space)
    console.print(f"latency table: measuring {len(probes)} probe models on {target.device} ({target.runtime}, "
                  f"{target.thread_count} thread{'s' if target.thread_count > 1 else ''}) -> {path}")
    bundles = work / "bundles"
    if not all((bundles / name / MANIFEST).is_file() for name in probes):
        checkpoints = _probe_checkpoints(checkpoint_path, space, probes, work / "checkpoints")
        write_bundles(bundles, checkpoints, target.export_request(), console, probe=True)
    run_dir, rows = measured(target, bundles, work / "results", [], console)
    points = []
    for name, widths in probes.items():
        row = rows[name]
        points.append({"name": name, "widths": widths.record(), "features": space.features(widths),
                       "macs": row["macs"], "p50_ms": row["p50_ms"], "p50_low_ms": row["p50_low_ms"],
                       "p50_high_ms": row["p50_high_ms"], "rounds": row["rounds"]})
    table = {"key": key, "identity": identity, "bench": target.record(), "run": run_dir.name,
             "scatter": run_scatter(target, run_dir),
             "percall_ms": (rows.get("percall") or {}).get("p50_ms"), "probes": points}
    write_json_atomic(path, table)
    shutil.move(str(run_dir), keep)
    shutil.rmtree(work, ignore_errors=True)
    return {**table, "path": str(path), "reused": False}


def _checked(table: object, key: dict, identity: dict) -> dict:
    """A stored table as a fit reads it, or ValueError/KeyError/TypeError: its key and identity, its scatter, and
    per probe the widths, features and a positive p50."""
    if not isinstance(table, dict) or json.loads(json.dumps(key, default=str)) != table["key"] \
            or table["identity"] != identity:
        raise ValueError("not the table of this key")
    if not all(table["scatter"][kind] is None or table["scatter"][kind] >= 0 for kind in ("latency", "speedup")):
        raise ValueError("scatter")
    names = set()
    for probe in table["probes"]:
        names.add(probe["name"])
        features, p50 = probe["features"], probe["p50_ms"]
        if not isinstance(probe["widths"], dict) or len(features) != len(FEATURES) \
                or not all(isinstance(x, (int, float)) for x in [*features, p50]) or not p50 > 0:
            raise ValueError(f"probe {probe['name']}")
    if DENSE not in names or not isinstance(table["run"], str):
        raise KeyError(DENSE)
    return table


def _probe_checkpoints(checkpoint_path: Path, space: Space, probes: dict[str, Widths], folder: Path) -> dict:
    checkpoint = load_checkpoint(checkpoint_path)
    dense = checkpoint.build_model()
    paths = {DENSE: checkpoint_path}
    for name, widths in probes.items():
        if name == DENSE:
            continue
        model = pruned_copy(dense, space, widths)
        record = {"method": "structured", "requested_sparsity": pruner_fields(space, widths)["sparsity"],
                  "latency_probe": widths.record(), "macs": count_macs(model)[0],
                  "test": {"source": None, "dense": None, "pruned": None, "finetuned": None}}
        paths[name] = folder / name / "model.pt"
        save_checkpoint(make_checkpoint(model, checkpoint.data, checkpoint.scaling, checkpoint.training, record),
                        paths[name])
    return paths
