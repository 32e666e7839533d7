"""Measuring on the target: the bundles a fit writes go through the existing bench (agent, transport, interleaved
rounds with dense, fresh processes) and come back as the verdict's p50 per variant with its 95% interval."""

from __future__ import annotations

import functools
import math
import statistics
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from tsprune_edge.devices.bench import RUNTIME_CHOICES, BenchRequest, bench, open_transport
from tsprune_edge.devices.profiles import DeviceProfile, load_profile
from tsprune_edge.devices.runs import DEFAULT_MIN_TIME, DEFAULT_ROUNDS, unfinished_run
from tsprune_edge.errors import BoardError, UserError
from tsprune_edge.export.bundle import DENSE, PROBE_VARIANT, ExportRequest
from tsprune_edge.report.verdict import load_rounds, load_run, undecided, verdict_rows


@dataclass(frozen=True)
class Target:
    """Where and how latency is measured: one board, one runtime, one thread count, batch 1."""

    device: str
    host: str | None = None
    runtime: str = "onnxruntime"  # onnxruntime or tflite (the board's TFLite runtime)
    threads: int | None = None  # None: the profile's first
    rounds: int = DEFAULT_ROUNDS
    min_time: float = DEFAULT_MIN_TIME
    min_iters: int = 100
    accept_new_host_key: bool = False
    ssh_config: Path | None = None
    port: int | None = None
    identity: Path | None = None

    @functools.cached_property
    def profile(self) -> DeviceProfile:  # read once: the TOML is not read again on every access
        return load_profile(self.device)

    @property
    def format(self) -> str:
        return RUNTIME_CHOICES[self.runtime]

    @property
    def thread_count(self) -> int:
        return self.threads or self.profile.threads[0]

    def validate(self) -> None:
        """Refuse, before any work, a runtime the board has none of, settings the bench would refuse and a board
        it cannot reach as asked (a remote one without --host, --host for this machine): nothing connects yet."""
        if self.runtime not in RUNTIME_CHOICES:
            raise UserError(f"unknown runtime {self.runtime!r}; --runtime takes onnxruntime or tflite")
        profile = self.profile
        if self.format not in profile.readable_formats():
            raise UserError(f"{profile.name} has no runtime for {self.format} artifacts (its runtimes: "
                            f"{', '.join(profile.runtimes)}); pass --runtime onnxruntime")
        request = self.bench_request(Path("."), Path("."), False)
        request.validate()
        with open_transport(profile, request):
            pass

    def export_request(self) -> ExportRequest:
        return ExportRequest(formats=(self.format,), **self.profile.export_fields())

    def bench_request(self, artifacts: Path, results: Path, resume: bool) -> BenchRequest:
        return BenchRequest(device=self.device, host=self.host, artifacts=artifacts, runtimes=(self.runtime,),
                            threads=(self.thread_count,), rounds=self.rounds, min_time=self.min_time,
                            min_iters=self.min_iters, results=results, resume=resume,
                            accept_new_host_key=self.accept_new_host_key, ssh_config=self.ssh_config,
                            port=self.port, identity=self.identity)

    def record(self) -> dict:
        return {"device": self.device, "host": self.host, "runtime": self.runtime, "threads": self.thread_count,
                "rounds": self.rounds, "min_time": self.min_time, "min_iters": self.min_iters}


def measure(target: Target, artifacts: Path, results: Path, console: Console) -> tuple[Path, dict[str, dict]]:
    """Bench every bundle under `artifacts` (a run of this device left unfinished under `results` is resumed, so
    what was measured is kept); returns the run folder and, per variant, its latency row."""
    resume = unfinished_run(results, target.profile.name) is not None if Path(results).is_dir() else False
    summary = bench(target.bench_request(artifacts, results, resume), console, more_rounds=undecided)
    run_dir = Path(results) / summary["run_id"]
    return run_dir, latency_rows(target, run_dir)


def latency_rows(target: Target, run_dir: Path) -> dict[str, dict]:
    """Per variant of a finished run, its latency row in the target's setting; every variant must have been timed."""
    rows = {}
    for row in verdict_rows(run_dir):
        if row["format"] == target.format and row["threads"] == target.thread_count \
                and not row["runtime"].startswith("tensorrt"):
            rows[row["variant"]] = {k: row.get(k) for k in ("p50_ms", "p50_low_ms", "p50_high_ms", "rounds",
                                                             "speedup", "speedup_low", "speedup_high", "verdict",
                                                             "macs", "torch_mse", "runtime", "flags")}
    unmeasured = [name for name, row in rows.items() if row["p50_ms"] is None]
    if unmeasured:
        raise BoardError(f"{', '.join(unmeasured)} could not be timed on {target.device} (see {run_dir}); "
                        "fix the board and run fit again (measured probes are kept)")
    return rows


def run_scatter(target: Target, run_dir: Path) -> dict:
    """How much one measurement scatters on this board, from a finished run's rounds (each round runs every item
    in fresh processes, so round-to-round is the run-to-run scatter of one round, an upper bound on a whole run's):
    `latency`, the standard deviation of the log of dense's round values; `speedup`, that of the log of every
    model's round value over dense's in the same round, pooled over the models. None where fewer than two rounds."""
    items = [item for item in load_run(run_dir)["items"] if item["format"] == target.format
             and item["threads"] == target.thread_count and not str(item["runtime"]).startswith("tensorrt")]
    rounds = {item["bundle"]: load_rounds(run_dir, item["id"]).medians for item in items}
    dense = rounds.get(DENSE, {})
    ratios = [[math.log(values[r] / dense[r]) for r in values if r in dense]
              for name, values in rounds.items() if name not in (DENSE, PROBE_VARIANT)]
    spreads = [statistics.variance(logs) for logs in ratios if len(logs) > 1]
    return {"latency": statistics.stdev(math.log(v) for v in dense.values()) if len(dense) > 1 else None,
            "speedup": math.sqrt(statistics.fmean(spreads)) if spreads else None,
            "rounds": len(dense)}
