"""The board's sensors and userland as the board defines them, read from fixture folders and stand-in tools that
print what the real ones print: a Nano's sysfs thermal zones (PMIC-Die reads a constant 100 C), `jetson_clocks
--show` after `sudo jetson_clocks` (EMC pinned through FreqOverride=1), `vcgencmd` run by a user outside group
video, /proc/meminfo's NvMapMemUsed, and a 32-bit userland. No real Jetson, Pi or 32-bit interpreter exists here:
the 32-bit userland is an ELF header and a pointer size injected into the agent's check (and, for `devices check`,
into a wrapper around this interpreter)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from tests.refusals import assert_one_line_error
from tsprune_edge.devices.profiles import BUILT_IN

AGENT_PATH = Path(__file__).resolve().parents[1] / "devices" / "agent.py"
_spec = importlib.util.spec_from_file_location("board_agent_sensors", AGENT_PATH)
agent = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(agent)

# thermal_zone<i>: (type, millidegrees) as a Jetson Nano on JetPack 4.6 lists them; PMIC-Die never moves from 100 C
NANO_ZONES = [("AO-therm", 38500), ("CPU-therm", 41500), ("GPU-therm", 39000), ("PLL-therm", 37000),
              ("PMIC-Die", 100000), ("thermal-fan-est", 42000)]
# `sudo jetson_clocks --show` on a Nano (L4T 32.7) after `sudo jetson_clocks`: EMC keeps MinFreq below MaxFreq
LOCKED_SHOW = """SOC family:tegra210  Machine:NVIDIA Jetson Nano Developer Kit
Online CPUs: 0-3
cpu0: Online=1 Governor=schedutil MinFreq=1479000 MaxFreq=1479000 CurrentFreq=1479000 IdleStates: WFI=0 c7=0
cpu1: Online=1 Governor=schedutil MinFreq=1479000 MaxFreq=1479000 CurrentFreq=1479000 IdleStates: WFI=0 c7=0
cpu2: Online=1 Governor=schedutil MinFreq=1479000 MaxFreq=1479000 CurrentFreq=1479000 IdleStates: WFI=0 c7=0
cpu3: Online=1 Governor=schedutil MinFreq=1479000 MaxFreq=1479000 CurrentFreq=1479000 IdleStates: WFI=0 c7=0
GPU MinFreq=921600000 MaxFreq=921600000 CurrentFreq=921600000
EMC MinFreq=204000000 MaxFreq=1600000000 CurrentFreq=1600000000 FreqOverride=1
Fan: speed=255
NV Power Mode: MAXN
"""
# the same board before jetson_clocks: CPU and GPU scale, EMC not overridden
DYNAMIC_SHOW = """\
cpu0: Online=1 Governor=schedutil MinFreq=102000 MaxFreq=1479000 CurrentFreq=825600 IdleStates: WFI=1 c7=1
GPU MinFreq=76800000 MaxFreq=921600000 CurrentFreq=76800000
EMC MinFreq=204000000 MaxFreq=1600000000 CurrentFreq=1600000000 FreqOverride=0
NV Power Mode: MAXN
"""


def write_zones(root: Path, zones: list[tuple[str, int]]) -> Path:
    for index, (kind, milli) in enumerate(zones):
        folder = root / f"thermal_zone{index}"
        folder.mkdir(parents=True)
        (folder / "type").write_text(kind + "\n")
        (folder / "temp").write_text(f"{milli}\n")
    return root


def stand_in(folder: Path, name: str, script: str) -> None:
    """A shell script named like the board's tool, printing what that tool prints."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text("#!/bin/sh\n" + script)
    (folder / name).chmod(0o755)


@pytest.fixture
def nano_sysfs(tmp_path, monkeypatch) -> Path:
    root = write_zones(tmp_path / "sys" / "class" / "thermal", NANO_ZONES)
    monkeypatch.setattr(agent, "THERMAL_ROOT", str(root))
    monkeypatch.setattr(agent, "THERMAL_ZONES", [])  # main() fills it in place: each test gets its own list
    monkeypatch.setenv("PATH", str(tmp_path / "no-tools"))  # no vcgencmd, nvpmodel, tegrastats here
    return root


def preflight(capsys, *args: str) -> dict:
    assert agent.main(["preflight", "--runtime", "tensorrt", *args]) == 0
    return json.loads(capsys.readouterr().out)


def test_the_nano_profile_counts_its_cpu_and_gpu_zones_not_pmic_die(nano_sysfs, capsys):
    zones = ",".join(BUILT_IN["jetson-nano"].thermal_zones)
    report = preflight(capsys, "--thermal-zones", zones)
    env = report["environment"]
    assert env["max_temperature_c"] == 41.5  # CPU-therm; PMIC-Die's 100 C and the fan's estimate do not count
    assert [(z["type"], z["celsius"], z["counted"]) for z in env["temperatures"]] == [
        ("AO-therm", 38.5, False), ("CPU-therm", 41.5, True), ("GPU-therm", 39.0, True), ("PLL-therm", 37.0, False),
        ("PMIC-Die", 100.0, False), ("thermal-fan-est", 42.0, False)]
    assert report["notes"] == []
    assert agent.max_temperature() == 41.5  # what --cooldown waits on


def test_without_profile_zones_every_zone_but_the_constant_one_counts(nano_sysfs, capsys):
    env = preflight(capsys)["environment"]
    assert env["max_temperature_c"] == 42.0  # the hottest zone that is not PMIC-Die
    assert [z["type"] for z in env["temperatures"] if not z["counted"]] == ["PMIC-Die"]


def test_a_zone_named_by_its_temp_file_path(nano_sysfs, capsys):
    env = preflight(capsys, "--thermal-zones", str(nano_sysfs / "thermal_zone2" / "temp"))["environment"]
    assert env["max_temperature_c"] == 39.0


def test_zones_the_board_lacks_are_said_with_the_fix(nano_sysfs, capsys):
    report = preflight(capsys, "--thermal-zones", "cpu-thermal")
    assert report["environment"]["max_temperature_c"] is None
    assert report["notes"] == [
        "none of the profile's thermal zones (cpu-thermal) is on this board (its zones: AO-therm, CPU-therm, "
        "GPU-therm, PLL-therm, PMIC-Die, thermal-fan-est): no temperature is recorded and --cooldown cannot wait; "
        "fix: set thermal_zones in the device profile"]


def test_the_plan_carries_the_zones_to_each_worker(tmp_path):
    plan = {"items": [{"id": "a", "bundle": "b", "format": "onnx", "runtime": "onnxruntime", "threads": 1}],
            "rounds": 1, "min_time": 0.1, "min_iters": 1, "cooldown": None, "thermal_zones": ["CPU-therm", "GPU-therm"]}
    argv = agent.worker_argv(plan["items"][0], plan, "bundle", "out.json")
    assert argv[argv.index("--thermal-zones") + 1] == "CPU-therm,GPU-therm"
    (tmp_path / "plan.json").write_text(json.dumps({**plan, "thermal_zones": ["a,b"]}))
    with pytest.raises(agent.AgentError, match="thermal_zones is a list of zone types or temp-file paths"):
        agent.load_plan(str(tmp_path / "plan.json"))


def test_jetson_clocks_after_sudo_jetson_clocks_counts_as_locked(tmp_path, monkeypatch):
    tools = tmp_path / "bin"
    stand_in(tools, "nvpmodel", "printf 'NV Power Mode: MAXN\\n0\\n'\n")
    stand_in(tools, "jetson_clocks", f"cat <<'EOF'\n{LOCKED_SHOW}EOF\n")
    monkeypatch.setenv("PATH", f"{tools}:/usr/bin:/bin")
    assert agent.jetson_power() == {"power_mode": {"name": "MAXN", "id": 0}, "clocks_locked": True, "warnings": [],
                                    "notes": []}
    assert agent.parse_jetson_clocks((0, DYNAMIC_SHOW)) is False
    assert agent.parse_jetson_clocks((0, LOCKED_SHOW.replace("CurrentFreq=1600000000", "CurrentFreq=204000000"))) \
        is False  # overridden, yet not at its maximum
    offline = LOCKED_SHOW.replace("cpu3: Online=1 Governor=schedutil MinFreq=1479000", "cpu3: Online=0 Governor="
                                  "schedutil MinFreq=102000")
    assert agent.parse_jetson_clocks((0, offline)) is True  # an offline core runs nothing


def test_jetson_clocks_without_root_says_unknown_and_how_to_check(tmp_path, monkeypatch):
    tools = tmp_path / "bin"
    stand_in(tools, "nvpmodel", "printf 'NV Power Mode: MAXN\\n0\\n'\n")
    stand_in(tools, "jetson_clocks", "echo 'Error: Run this script(/usr/bin/jetson_clocks) as a root user'\nexit 1\n")
    monkeypatch.setenv("PATH", f"{tools}:/usr/bin:/bin")
    monkeypatch.setattr(agent.os, "geteuid", lambda: 1000)
    state = agent.jetson_power()
    assert (state["clocks_locked"], state["warnings"]) == (None, [])
    assert state["notes"] == ["clocks locked: unknown, run as root to check (sudo jetson_clocks --show)"]


def test_vcgencmd_outside_group_video_is_one_line_with_the_fix(nano_sysfs, tmp_path, monkeypatch, capsys):
    tools = tmp_path / "bin"
    stand_in(tools, "vcgencmd", "echo '* failed to open vchiq instance'\nexit 255\n")
    monkeypatch.setenv("PATH", str(tools))
    report = preflight(capsys)
    line = ("vcgencmd get_throttled failed (* failed to open vchiq instance): this user cannot read the board's "
            "throttling (/dev/vchiq); fix: sudo usermod -aG video $USER, then log in again")
    assert (report["environment"]["throttled"], report["environment"]["throttled_error"]) == (None, line)
    assert report["notes"] == [line]
    stand_in(tools, "vcgencmd", "echo 'throttled=0x50005'\n")
    assert agent.throttle_reading() == ("throttled=0x50005", None)


def test_nvmap_memory_is_recorded_around_the_session(bundles, tmp_path, monkeypatch, capsys):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:        4059200 kB\nMemAvailable:    2117460 kB\nNvMapMemUsed:     204800 kB\n")
    monkeypatch.setattr(agent, "MEMINFO", str(meminfo))
    out = tmp_path / "result.json"
    code = agent.main(["measure", "--bundle", str(bundles / "dense"), "--format", "onnx", "--runtime", "onnxruntime",
                       "--threads", "1", "--min-time", "0.05", "--min-iters", "5", "--max-warmup", "0.1",
                       "--out", str(out)])
    assert code == 0, capsys.readouterr()
    assert json.loads(out.read_text())["nvmap_kib"] == {"start": 204800, "after_load": 204800,
                                                         "after_timing": 204800}
    monkeypatch.setattr(agent, "MEMINFO", "/proc/meminfo")
    assert agent.nvmap_kib() is None  # not a Jetson


def elf_header(bits: int, machine: int) -> bytes:
    """The first 20 bytes of an ELF executable: magic, class (1: 32-bit, 2: 64-bit), little-endian, version,
    then e_type EXEC and e_machine (40: ARM, 183: AArch64)."""
    return b"\x7fELF" + bytes([1 if bits == 32 else 2, 1, 1]) + bytes(9) + (2).to_bytes(2, "little") + \
        machine.to_bytes(2, "little")


def test_a_32_bit_userland_on_a_64_bit_kernel_is_refused(tmp_path):
    armhf, arm64 = tmp_path / "python3-armhf", tmp_path / "python3-arm64"
    armhf.write_bytes(elf_header(32, 40))
    arm64.write_bytes(elf_header(64, 183))
    assert agent.userland("aarch64", 4, str(armhf)) == {
        "machine": "aarch64", "pointer_bits": 32, "executable_elf_bits": 32, "bits": 32,
        "problem": "this board runs a 32-bit userland on a 64-bit kernel (aarch64): no ONNX Runtime or ai-edge-litert "
                   "wheel exists for it; fix: install Raspberry Pi OS (64-bit), bookworm (Raspberry Pi Imager: "
                   "Raspberry Pi OS (64-bit) or Raspberry Pi OS Lite (64-bit))"}
    assert agent.userland("aarch64", 8, str(armhf))["bits"] == 32  # either reading is enough
    assert agent.userland("aarch64", 8, str(arm64))["problem"] is None
    here = agent.userland()
    assert (here["pointer_bits"], here["executable_elf_bits"], here["problem"]) == (64, 64, None)


def test_devices_check_refuses_a_32_bit_userland_in_one_line(cli, tmp_path, monkeypatch):
    """This interpreter behind a wrapper that reports the machine and pointer size of 32-bit Pi OS on a Pi 4."""
    wrapper = tmp_path / "python32"
    wrapper.write_text(
        f"#!/bin/sh\nexec {sys.executable} -c 'import platform, runpy, struct, sys; size = struct.calcsize; "
        "struct.calcsize = lambda f: 4 if f == \"P\" else size(f); platform.machine = lambda: \"aarch64\"; "
        "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name=\"__main__\")' \"$@\"\n")
    wrapper.chmod(0o755)
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "pi32.toml").write_text(
        f'description = "32-bit Pi OS"\narch = "aarch64"\ncores = 4\nmemory_mb = 4096\nlocal = true\n'
        f'python = "{wrapper}"\nworkdir = "{tmp_path / "board"}"\nruntimes = ["onnxruntime"]\n')
    monkeypatch.setenv("TSPRUNE_EDGE_DEVICES_DIR", str(profiles))
    result = cli("devices", "check", "--device", "pi32")
    assert_one_line_error(result, "this board runs a 32-bit userland on a 64-bit kernel (aarch64)",
                          "fix: install Raspberry Pi OS (64-bit), bookworm")
    assert list((tmp_path / "board").iterdir()) == []  # the check's own folder is removed


def test_install_hints_where_plain_pip_fails(monkeypatch):
    venv = str(AGENT_PATH.parents[1] / "venv")  # beside the agent's run folder: the board's workdir
    in_venv = (f"run `tsprune-edge devices setup --device NAME --host HOST` on the host: it makes a venv at {venv} "
               "with the runtimes that run on this board, and bench uses it")
    monkeypatch.setattr(agent, "externally_managed", lambda: False)
    monkeypatch.setattr(agent, "pip_version", lambda: (9, 0, 1))  # JetPack 4.6's apt pip
    assert agent.install_hint("onnxruntime") == f"pip 9.0.1 cannot install manylinux2014 wheels: {in_venv}"
    monkeypatch.setattr(agent, "externally_managed", lambda: True)  # Pi OS bookworm's system Python
    monkeypatch.setattr(agent, "pip_version", lambda: (23, 0, 1))
    assert agent.install_hint("onnxruntime") == ("this Python is externally managed (PEP 668: pip says "
                                                 f"externally-managed-environment): {in_venv}")
    monkeypatch.undo()
    assert agent.pip_version() >= agent.PIP_MANYLINUX2014 and agent.externally_managed() is False  # this venv
    assert agent.install_hint("onnxruntime") == "pip install onnxruntime"


def test_an_illegal_instruction_on_arm64_names_the_numpy_fix(monkeypatch):
    monkeypatch.setattr(agent.platform, "machine", lambda: "aarch64")
    assert agent.fix_hint("onnxruntime", "import " + agent.child_failure(-4, "")) == (
        "Illegal instruction: numpy 1.19.5's OpenBLAS does this on a Jetson Nano; set OPENBLAS_CORETYPE=ARMV8 in the "
        "interpreter's environment (a wrapper script as the profile's python), or pip install numpy==1.19.4")
