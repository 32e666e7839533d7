"""What spoils a measurement, caught while it runs: the agent's ClockSampler reads the CPU frequency and governor of
every CPU, each devfreq device (a Jetson's GPU) and the Pi's throttle bits between timed inferences. Sysfs is read
from a fixture folder laid out as a board's /sys (and from this machine's own /sys in a real measurement); vcgencmd
is a stand-in script printing what a Pi prints. The report leaves a flagged measurement out, as a throttled one."""

from __future__ import annotations

import glob
import importlib.util
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tsprune_edge.devices import runs
from tsprune_edge.devices.readings import clock_reason, spoil_reason, throttle_reason
from tsprune_edge.report.verdict import verdict_rows

AGENT_PATH = Path(__file__).resolve().parents[1] / "devices" / "agent.py"
_spec = importlib.util.spec_from_file_location("board_agent_flags", AGENT_PATH)
agent = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(agent)

GPU = "57000000.gpu"  # a Jetson Nano's GPU under /sys/class/devfreq


def board(root: Path, khz: list[int], governor: str = "schedutil", gpu_hz: int | None = None) -> Path:
    """A board's /sys under `root`: one cpufreq folder per CPU and, with gpu_hz, the Jetson GPU's devfreq."""
    for cpu, value in enumerate(khz):
        folder = root / "sys" / "devices" / "system" / "cpu" / f"cpu{cpu}" / "cpufreq"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "scaling_cur_freq").write_text(f"{value}\n")
        (folder / "scaling_governor").write_text(f"{governor}\n")
    if gpu_hz is not None:
        folder = root / "sys" / "class" / "devfreq" / GPU
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "cur_freq").write_text(f"{gpu_hz}\n")
    return root


def test_a_frequency_change_inside_a_measurement_flags_it(tmp_path):
    """A Pi 4 capped from 1500 to 1000 MHz between two samples (one policy: every core changes)."""
    root = board(tmp_path, [1500000] * 4)
    sampler = agent.ClockSampler(root=str(root), vcgencmd="")
    sampler.sample()
    board(root, [1000000] * 4)
    sampler.sample()
    board(root, [1500000] * 4)
    sampler.sample()
    record = sampler.record()
    assert record["cpus_read"] == 4 and record["samples"] == 3 and record["cpu_mhz"] == [1000.0, 1500.0]
    assert record["changed"] == ["CPU frequency 1000-1500 MHz"] and record["governors"] == ["schedutil"]
    assert record["throttled"] == [] and not record["vcgencmd"] and record["clock_domains"] == 4
    result = {"clocks": record, "environment_before": {"governor": "schedutil"},
              "environment_after": {"governor": "schedutil"}}
    assert spoil_reason(result) == "clocks changed while measuring (CPU frequency 1000-1500 MHz)"


def test_steady_clocks_idle_cores_and_small_steps_do_not_flag(tmp_path):
    """Idle cores of a per-core policy report their own low clocks: the fastest CPU is the one timed. A step
    within the 3% tolerance is not a change; the next one on a Nano's table (1479 -> 1428 MHz, 3.4%) is."""
    root = board(tmp_path, [3600000, 800000, 3600000, 1200000])
    sampler = agent.ClockSampler(root=str(root), vcgencmd="")
    sampler.sample()
    board(root, [3600000, 3100000, 3550000, 800000])  # cpu0 still the fastest at 3600; 3550 is within 3%
    sampler.sample()
    assert sampler.record()["changed"] == [] and sampler.record()["cpu_mhz"] == [3600.0, 3600.0]
    board(root, [3500000] * 4)  # 100 of 3600 MHz: 2.8%
    sampler.sample()
    assert sampler.record()["changed"] == []
    nano = agent.ClockSampler(root=str(board(tmp_path / "nano", [1479000] * 4)), vcgencmd="")
    nano.sample()
    board(tmp_path / "nano", [1428000] * 4)
    nano.sample()
    assert nano.record()["changed"] == ["CPU frequency 1428-1479 MHz"]


def test_a_governor_change_flags_inside_and_between_the_readings(tmp_path):
    root = board(tmp_path, [1500000] * 4, governor="ondemand")
    sampler = agent.ClockSampler(root=str(root), vcgencmd="")
    sampler.sample()
    board(root, [1500000] * 4, governor="performance")
    sampler.sample()  # governors are read once a second: not yet
    assert sampler.record()["changed"] == []
    sampler.sample(full=True)  # as timing ends, every clock is read
    assert sampler.record()["changed"] == ["governor ondemand -> performance"]
    # the agent's before and after readings bracket the whole measurement: a change there flags it too
    steady = {"clocks": {"changed": []}, "environment_before": {"governor": "powersave"},
              "environment_after": {"governor": "performance"}}
    assert clock_reason(steady) == "clocks changed while measuring (governor powersave -> performance)"
    assert clock_reason({**steady, "environment_after": {"governor": "powersave"}}) is None
    assert clock_reason({"environment_before": {"governor": None}, "environment_after": {"governor": None}}) is None


def test_a_jetson_gpu_clock_change_flags_a_gpu_measurement_only(tmp_path):
    """A CPU runtime does not wait for the GPU: its clock is recorded, and flags only a model the GPU ran."""
    root = board(tmp_path, [1479000] * 4, gpu_hz=921600000)
    sampler = agent.ClockSampler(root=str(root), vcgencmd="")
    sampler.sample()
    board(root, [1479000] * 4, gpu_hz=76800000)
    sampler.sample()
    assert sampler.record(gpu=False)["changed"] == []
    assert sampler.record(gpu=False)["devfreq_mhz"] == {GPU: [76.8, 921.6]}
    assert sampler.record(gpu=True)["changed"] == [f"{GPU} frequency 77-922 MHz"]


@pytest.fixture
def vcgencmd(tmp_path: Path) -> Callable:
    """A stand-in vcgencmd that prints, call by call, the masks it is given (the last one repeats)."""
    def make(*masks: str) -> str:
        (tmp_path / "masks").write_text("\n".join(masks) + "\n")
        (tmp_path / "count").write_text("0")
        script = tmp_path / "vcgencmd"
        script.write_text(f"#!{sys.executable}\nfrom pathlib import Path\n"
                          f"masks = Path({str(tmp_path / 'masks')!r}).read_text().split()\n"
                          f"count = Path({str(tmp_path / 'count')!r})\nn = int(count.read_text())\n"
                          "count.write_text(str(n + 1))\nprint('throttled=' + masks[min(n, len(masks) - 1)])\n")
        script.chmod(0o755)
        return str(script)
    return make


def _throttle_samples(root: Path, command: str, samples: int) -> dict:
    sampler = agent.ClockSampler(root=str(root), vcgencmd=command)
    for _ in range(samples):
        sampler.sample(full=True)  # as if a second passed between samples: each runs vcgencmd
    return sampler.record()


def test_a_throttle_that_starts_and_ends_inside_a_measurement_flags_it(tmp_path, vcgencmd):
    """Before and after read 0x50000 (history only); a sample in between caught 'throttled' holding now."""
    root = board(tmp_path / "pi", [1500000] * 4)
    record = _throttle_samples(root, vcgencmd("0x50000", "0x50004", "0x50000"), 3)
    assert record["throttled"] == [0x50000, 0x50004] and record["throttle_samples"] == 3
    result = {"clocks": record, "environment_before": {"throttled": "throttled=0x50000"},
              "environment_after": {"throttled": "throttled=0x50000"}}
    assert throttle_reason(result) == "throttled (throttled while measuring)"
    assert throttle_reason({**result, "clocks": None}) is None  # before and after alone cannot see it


def test_a_since_boot_bit_set_inside_a_measurement_flags_it(tmp_path, vcgencmd):
    """A Pi that throttled since boot (0x40000) reports under-voltage since boot from a sample on."""
    root = board(tmp_path / "pi", [1500000] * 4)
    record = _throttle_samples(root, vcgencmd("0x40000", "0x50000"), 2)
    result = {"clocks": record, "environment_before": {"throttled": "throttled=0x40000"},
              "environment_after": {"throttled": "throttled=0x50000"}}
    assert throttle_reason(result) == "throttled (under-voltage since boot changed during the measurement)"
    quiet = _throttle_samples(root, vcgencmd("0x50000"), 2)
    assert quiet["throttled"] == [0x50000]
    assert spoil_reason({"clocks": quiet, "environment_before": {"throttled": "throttled=0x50000"},
                         "environment_after": {"throttled": "throttled=0x50000"}}) is None


def test_sampling_costs_little_and_only_between_timings(tmp_path):
    """A frequency sample reads one file per clock domain: a Pi's four CPUs share one policy (cpuN/cpufreq links
    to policy0); a desktop of 64 per-core policies reads 64: a few microseconds each on an idle machine, and under
    2% of the 100 ms between samples on this shared machine under a load of 11."""
    pi = tmp_path / "pi" / "sys" / "devices" / "system" / "cpu"
    (pi / "cpufreq" / "policy0").mkdir(parents=True)
    (pi / "cpufreq" / "policy0" / "scaling_cur_freq").write_text("1500000\n")
    for cpu in range(4):
        (pi / f"cpu{cpu}").mkdir()
        (pi / f"cpu{cpu}" / "cpufreq").symlink_to(pi / "cpufreq" / "policy0")
    shared = agent.ClockSampler(root=str(tmp_path / "pi"), vcgencmd="")
    assert (shared.cpus_read, len(shared.cpu_files)) == (4, 1)
    root = board(tmp_path / "desktop", [2000000] * 64, governor="performance", gpu_hz=921600000)
    sampler = agent.ClockSampler(root=str(root), vcgencmd="")
    sampler.sample()  # the first sample reads the 64 governors too
    first = sampler.spent
    files = sampler.cpu_files + sampler.devfreq_files
    began = time.perf_counter()
    for _ in range(100):
        for path in files:
            agent.read_number(path)
    reads = time.perf_counter() - began  # the 65 reads alone, a hundred times, at this moment's load
    for _ in range(100):
        sampler.sample()
    record = sampler.record()
    assert (record["samples"], record["slow_samples"], record["clock_domains"]) == (101, 1, 64)
    # a sample costs its file reads and little else: 1.4 ms here under a load of 11, about 20 us a file
    assert record["seconds"] - first < 2 * reads
    calls = []

    class Counting:
        due = 0.0

        def sample(self):
            calls.append(True)
            self.due = float("inf")  # due once: a sample only ever runs between two timings

    latencies = agent.timed_iterations(lambda feed: None, None, 0.0, 5, Counting())
    assert len(latencies) == 5 and len(calls) == 1


def test_a_real_measurement_records_this_machines_clocks(bundles, tmp_path):
    """The agent as a board runs it, reading this machine's /sys: one sample as timing starts, one as it ends,
    one every 100 ms between; what it read is what /sys has."""
    out = tmp_path / "result.json"
    proc = subprocess.run([sys.executable, str(AGENT_PATH), "measure", "--bundle", str(bundles / "dense"),
                           "--format", "onnx", "--runtime", "onnxruntime", "--threads", "1", "--min-time", "0.5",
                           "--min-iters", "20", "--max-warmup", "0.5", "--out", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(out.read_text())
    clocks, timed = result["clocks"], sum(result["latencies_s"])
    readable = [p for p in glob.glob("/" + agent.CPU_FREQ_GLOB) if agent.read_number(p)]
    assert clocks["cpus_read"] == len(glob.glob("/" + agent.CPU_FREQ_GLOB))
    assert (clocks["cpu_mhz"] is None) == (not readable)
    assert clocks["vcgencmd"] == bool(shutil.which("vcgencmd")) and clocks["slow_samples"] >= 2
    assert 2 + int(timed / 0.2) <= clocks["samples"] <= 3 + timed / agent.CLOCK_SAMPLE_S
    assert clocks["seconds"] < 0.02 * timed
    assert spoil_reason(result) == (f"clocks changed while measuring ({'; '.join(clocks['changed'])})"
                                    if clocks["changed"] else None)



def _edit(run: Path, item_id: str, number: int, change) -> None:
    """Change both passes of round `number`."""
    for (round_number, _), path in runs.round_paths(run, item_id):
        if round_number == number:
            result = json.loads(path.read_text())
            change(result)
            path.write_text(json.dumps(result))


def test_the_report_leaves_out_exactly_the_flagged_measurements(tmp_path, onnx_run):
    run = tmp_path / onnx_run.name
    shutil.copytree(onnx_run, run)

    def clocks_changed(result: dict) -> None:
        result["clocks"]["changed"] = ["CPU frequency 1000-1500 MHz"]

    def throttled_inside(result: dict) -> None:
        result["environment_before"]["throttled"] = result["environment_after"]["throttled"] = "throttled=0x50000"
        result["clocks"]["throttled"] = [0x50000, 0x50004]

    _edit(run, "dense__onnx__t1", 2, clocks_changed)
    _edit(run, "unstructured-0.5__onnx__t1", 3, throttled_inside)
    rows = {r["variant"]: r for r in verdict_rows(run)}
    dense, variant = rows["dense"], rows["unstructured-0.5"]
    assert dense["flags"] == [f"r2{b} clocks changed while measuring (CPU frequency 1000-1500 MHz)" for b in ("", "b")]
    assert variant["flags"] == [f"r3{b} throttled (throttled while measuring)" for b in ("", "b")]
    assert (dense["rounds"], variant["rounds"], variant["paired_rounds"]) == (2, 2, 1)
    assert variant["verdict"] == "NOT JUDGED: under 2 paired rounds"
