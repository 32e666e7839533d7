"""From a bench run's results folder to verdict rows: every variant against the dense reference of the same
format, runtime and thread count, measured in the same interleaved run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tsprune_edge.devices.readings import throttled
from tsprune_edge.errors import UserError
from tsprune_edge.report.profile_diff import attach_profile_diffs
from tsprune_edge.report.stats import median_ratio, verdict

DEFAULT_MIN_EFFECT = 0.05


def load_run(run_dir: Path) -> dict:
    path = Path(run_dir) / "bench.json"
    if not path.is_file():
        raise UserError(f"{run_dir} is not a finished bench run (no bench.json); run `tsprune-edge bench` or "
                        "finish it with --resume")
    run = json.loads(path.read_text())
    if "bundles" not in run:
        raise UserError(f"{path} has no bundle facts (an older bench); run `tsprune-edge bench` again")
    return run


def round_latencies(run_dir: Path, item_id: str) -> tuple[list[np.ndarray], list[str]]:
    """Latency arrays of the rounds that count, and why the others were left out (throttled, incorrect, failed)."""
    kept, flags = [], []
    for path in sorted((Path(run_dir) / "raw").glob(f"{item_id}__r*.json")):
        result = json.loads(path.read_text())
        name = path.stem.rsplit("__", 1)[1]
        if "error" in result:
            flags.append(f"{name} failed")
        elif not result["correctness"]["within_tolerance"]:
            flags.append(f"{name} incorrect outputs")
        elif throttled(result):
            flags.append(f"{name} throttled")
        else:
            kept.append(np.asarray(result["latencies_s"], dtype=float))
    return kept, flags


def verdict_rows(run_dir: Path, min_effect: float = DEFAULT_MIN_EFFECT) -> list[dict]:
    """One row per measured item; pruned variants carry the ratio, its interval, the verdict and the ratios of
    memory and bytes against dense; dense rows are the references."""
    run = load_run(run_dir)
    bundles = run["bundles"]
    items = {item["id"]: item for item in run["items"]}
    rows = []
    for item in run["items"]:
        if item.get("probe"):  # the per-call probe is no variant to judge
            continue
        facts = bundles.get(item["bundle"], {})
        latencies, flags = round_latencies(run_dir, item["id"])
        row = {"run": run["run_id"], "device": run["device"]["name"], "machine": run["machine"],
               "emulated": run["emulated"], "variant": item["bundle"], "model": facts.get("model"),
               "method": facts.get("method"), "sparsity": facts.get("sparsity"), "format": item["format"],
               "runtime": f"{item['runtime']} {item.get('runtime_version', '')}".strip(), "threads": item["threads"],
               "rounds": len(latencies), "flags": flags, "p50_ms": item.get("p50_s", float("nan")) * 1e3,
               "macs": facts.get("macs"), "max_abs_error": item.get("max_abs_error"),
               "torch_mse": (facts.get("torch_test") or {}).get("mse"),
               "board_mse": (item.get("accuracy") or {}).get("mse"),
               "board_mae": (item.get("accuracy") or {}).get("mae")}
        dense_id = f"dense__{item['format']}__t{item['threads']}"
        if item["bundle"] != "dense" and dense_id in items:
            row.update(_against_dense(run_dir, latencies, dense_id, items[dense_id], facts,
                                      bundles.get("dense", {}), item, min_effect))
        rows.append(row)
    _fill_dense_accuracy(rows, bundles)
    attach_profile_diffs(run_dir, rows)  # where the time goes, from `bench --profile`
    return rows


def _against_dense(run_dir: Path, latencies: list[np.ndarray], dense_id: str, dense_item: dict, facts: dict,
                   dense_facts: dict, item: dict, min_effect: float) -> dict:
    dense_latencies, dense_flags = round_latencies(run_dir, dense_id)
    if not latencies or not dense_latencies:
        return {"verdict": "NOT JUDGED: no usable rounds", "dense_flags": dense_flags}
    ratio = median_ratio(latencies, dense_latencies)
    predicted = dense_facts["macs"] / facts["macs"] if facts.get("macs") and dense_facts.get("macs") else None
    fmt = item["format"]
    return {
        "ratio": ratio.ratio, "ratio_low": ratio.low, "ratio_high": ratio.high,
        "speedup": ratio.speedup, "speedup_low": 1 / ratio.high, "speedup_high": 1 / ratio.low,
        "verdict": verdict(ratio, min_effect), "min_effect": min_effect,
        "predicted_speedup": predicted,
        "efficiency": ratio.speedup / predicted if predicted and predicted > 1.0 + 1e-9 else None,
        "memory_ratio": _ratio(item.get("peak_rss_kib"), dense_item.get("peak_rss_kib")),
        "file_ratio": _ratio(facts["artifacts"][fmt]["bytes"], dense_facts["artifacts"][fmt]["bytes"]),
        "zstd_ratio": _ratio(facts["artifacts"][fmt]["zstd_bytes"], dense_facts["artifacts"][fmt]["zstd_bytes"]),
        "dense_flags": dense_flags,
    }


def _fill_dense_accuracy(rows: list[dict], bundles: dict) -> None:
    """The dense bundle records no pruning; its torch test MSE is in every pruned bundle's record."""
    dense_mse = next((b["torch_test_dense"]["mse"] for b in bundles.values() if b.get("torch_test_dense")), None)
    for row in rows:
        if row["variant"] == "dense":
            row["torch_mse"] = dense_mse


def _ratio(value, reference) -> float | None:
    return value / reference if value and reference else None
