#!/usr/bin/env python3
"""tsprune-edge board agent: checks a board, verifies export bundles and measures their artifacts.

One file, copied to the board and run with `python3 agent.py ...`. It imports only the standard library, numpy
(lazily, so `preflight` and `verify` work without it) and whichever runtime the board has, and runs on Python 3.6+
(Jetson Nano's system Python). Every output is JSON. Exit codes: 0 ok, 1 a hash mismatch or a failed measurement
in a run, 2 bad arguments, 3 could not do the work (the JSON says why in `error`), 4 another run holds the lock.
"""

import argparse
import array
import base64
import bisect
import gc
import glob
import hashlib
import importlib
import json
import math
import os
import platform
import re
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import sysconfig
import tempfile
import time

SCHEMA_VERSION = 1
PY = tuple(sys.version_info[:2])
# runtime name (as on the command line) -> module that holds the inference API
RUNTIMES = {"onnxruntime": "onnxruntime", "tflite_runtime": "tflite_runtime.interpreter",
            "ai_edge_litert": "ai_edge_litert.interpreter"}
FORMAT_RUNTIMES = {"onnx": ("onnxruntime", "tensorrt"), "tflite": ("ai_edge_litert", "tflite_runtime")}
SETUP_COMMAND = "tsprune-edge devices setup --device NAME --host HOST"  # where plain pip cannot install
INSTALL = {"onnxruntime": "pip install onnxruntime", "tflite_runtime": "pip install tflite-runtime",
           "ai_edge_litert": "pip install ai-edge-litert"}
SAMPLE_INPUTS = ("history", "calendar")  # samples.npz arrays, in the artifacts' input order
WARMUP_BLOCK, WARMUP_BLOCK_S = 20, 0.05  # a warm-up block: at least this many inferences and seconds
WARMUP_TOLERANCE = 0.05  # ... and stops once they differ by at most this fraction
LOCK_NAME = ".agent.lock"
ITEM_ID = re.compile(r"^[A-Za-z0-9._-]+$")  # a plan item's id, `<bundle>__<format>__t<threads>`: a safe file name
EXIT_NOT_OK, EXIT_FAILED, EXIT_LOCKED = 1, 3, 4
# the probe's child imports this file as a module and calls probe_child(name)
PROBE = "import sys; sys.path.insert(0, sys.argv[1]); __import__(sys.argv[2]).probe_child(sys.argv[3])"
# Smoke models, y = x + x for a float32 [1, 4] x: ONNX (onnx.helper, IR 6, opset 11, so old ORT builds load it) and
# TFLite (litert-torch, one ADD). One inference catches what an import does not: tflite-runtime 2.14 imports under
# numpy 2 and fails only when it builds an interpreter.
SMOKE_MODELS = {
    "onnx": "CAYSADpBCg4KAXgKAXgSAXkiA0FkZBIFc21va2VaEwoBeBIOCgwIARIICgIIAQoCCARiEwoBeRIOCgwIARIICgIIAQoCCARCBAoAEAs=",
    "tflite": (
        "HAAAAFRGTDMUACAABAAIAAwAEAAUAAAAGAAcABQAAAADAAAAOAAAACwAAABMAQAADAAAALAAAAAsAAAABQAAAKQCAACgAgAAnAIAABAB"
        "AADIAAAAAQAAAEQBAAABAAAAzAEAAAEAAAAQAAAAAAAKABAADAAIAAQACgAAAAwAAAAcAAAAIAAAAA8AAABzZXJ2aW5nX2RlZmF1bHQA"
        "AQAAABQAAAABAAAAKAAAAAgADAAIAAQACAAAAAEAAAAEAAAACAAAAG91dHB1dF8wAAAAAHr///8EAAAABgAAAGFyZ3NfMAAAAgAAAEgA"
        "AAAEAAAAyP///wgAAAAEAAAAFwAAAGtlZXBfc3RhYmxlaGxvX2NvbnN0YW50AML///8EAAAABAAAAHRydWUIAAwABAAIAAgAAAAIAAAA"
        "AwAAABMAAABtaW5fcnVudGltZV92ZXJzaW9uAAAABgAIAAQABgAAAAQAAAAQAAAAMS41LjAAAAAAAAAAAAAAAA8AAABNTElSIENvbnZl"
        "cnRlZC4AAAAOABgABAAIAAwAEAAUAA4AAAA4AAAALAAAACAAAAAUAAAABAAAAAQAAABtYWluAAAAAAEAAAAwAAAAAQAAAAEAAAABAAAA"
        "AAAAAAIAAADAAAAAVAAAAAAADgAUAAAACAAMAAcAEAAOAAAAAAAACxgAAAAMAAAABAAAACj///8BAAAAAQAAAAIAAAAAAAAAAAAAAAAA"
        "CgAIAAAAAAAEAAoAAAABAAAArv///wAAAAE0AAAAAgAAAAgAAAA4AAAAHwAAAHNlcnZpbmdfZGVmYXVsdF9vdXRwdXRfMF9vdXRwdXQA"
        "AgAAAAEAAAAEAAAABAAGAAQAAAAAABYAGAAIAAAADAAQABQAAAAAAAAABwAWAAAAAAAAASwAAAABAAAACAAAACwAAAAWAAAAc2Vydmlu"
        "Z19kZWZhdWx0X2FyZ3NfMAAAAgAAAAEAAAAEAAAA/P///wQABAAEAAAA"),
}


class AgentError(Exception):
    """A failure reported as one line of JSON (exit 3), never as a bare traceback."""


# ---------------------------------------------------------------- small helpers

def one_line(text, limit=400):
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return (lines[0] if lines else "")[:limit]


def error_line(exc):
    """`Type: message`, with the root cause where the runtime wraps one (a SystemError over numpy's real error)."""
    if isinstance(exc, AgentError):
        return one_line(exc)
    text, cause = one_line(f"{type(exc).__name__}: {exc}"), exc
    for _ in range(5):
        if (cause.__cause__ or cause.__context__) is None:
            break
        cause = cause.__cause__ or cause.__context__
    if cause is not exc:
        text += " (caused by " + one_line(f"{type(cause).__name__}: {cause}") + ")"
    return text


def write_json(path, data):
    """Write through a temp file in the same folder and rename, so a reader never sees half a file."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=folder)
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle, separators=(",", ":"))
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it private; results are meant to be read by the host's user
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def print_json(data):
    print(json.dumps(data), flush=True)


def read_json(path):
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def read_text(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except OSError:
        return None


def proc_kib(field, path="/proc/self/status"):
    """A `Field:  1234 kB` value from /proc (VmRSS, VmHWM, MemAvailable), None where /proc has none."""
    match = re.search(rf"^{field}:\s+(\d+)", read_text(path) or "", re.MULTILINE)
    return int(match.group(1)) if match else None


def command_output(argv, timeout):
    """(exit code, output) of a command, or None if it is not installed; a command still running at the timeout
    is killed and returns what it printed so far (tegrastats never exits by itself)."""
    if shutil.which(argv[0]) is None:
        return None
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    return proc.returncode, out.decode("utf-8", "replace")


def sha256_file(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def utc_now():
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


# ---------------------------------------------------------------- the board and its state

def cpuinfo_field(text, *names):
    for name in names:
        match = re.search(rf"^{name}\s*:\s*(.+)$", text, re.MULTILINE)
        if match:
            return match.group(1).strip()
    return None


def cpu_model():
    """x86 says `model name`; a Pi's 64-bit kernel has only `Model` and the device tree."""
    text = read_text("/proc/cpuinfo") or ""
    model = cpuinfo_field(text, "model name", "Model", "Hardware")
    board = (read_text("/proc/device-tree/model") or "").strip("\x00\n ")
    return model or board or platform.processor() or None


def cpu_info():
    text = read_text("/proc/cpuinfo") or ""
    flags = cpuinfo_field(text, "flags", "Features")
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {"model": cpu_model(), "cores": os.cpu_count(), "usable_cores": usable,
            "arm_cpu_part": cpuinfo_field(text, "CPU part"), "flags": flags.split() if flags else []}


THERMAL_ROOT = "/sys/class/thermal"
MEMINFO = "/proc/meminfo"
# Zones that read a constant, never the board's heat: the Jetson Nano's PMIC-Die says 100 C whatever happens.
CONSTANT_ZONES = ("PMIC-Die",)
# The profile's zones (a zone's type, e.g. CPU-therm, or its temp file's path), from --thermal-zones or the plan;
# empty: every zone but the constant ones.
THERMAL_ZONES = []


def temperatures(wanted=None):
    """Every thermal zone, each `counted` when it is one the profile names (by type or temp-file path) or, where it
    names none, when it is not a known constant zone: only counted zones make max_temperature_c and the cool-down."""
    wanted = THERMAL_ZONES if wanted is None else wanted
    named = set(wanted) | set(os.path.realpath(w) for w in wanted if w.startswith("/"))
    zones = []
    for folder in sorted(glob.glob(os.path.join(THERMAL_ROOT, "thermal_zone*")), key=natural_key):
        path = os.path.join(folder, "temp")
        raw = (read_text(path) or "").strip()
        if re.match(r"^-?\d+$", raw):
            kind = (read_text(os.path.join(folder, "type")) or "").strip() or None
            counted = bool({kind, path, os.path.realpath(path)} & named) if wanted else kind not in CONSTANT_ZONES
            zones.append({"zone": os.path.basename(folder), "type": kind, "celsius": int(raw) / 1000.0,
                          "counted": counted})
    return zones


def hottest(zones):
    counted = [zone["celsius"] for zone in zones if zone["counted"]]
    return max(counted) if counted else None


def max_temperature():
    return hottest(temperatures())


def thermal_note(zones):
    """One line when the profile names zones this board does not have (then nothing is counted), else None."""
    if not THERMAL_ZONES or any(zone["counted"] for zone in zones):
        return None
    found = ", ".join(str(zone["type"] or zone["zone"]) for zone in zones) or "none"
    return (f"none of the profile's thermal zones ({', '.join(THERMAL_ZONES)}) is on this board (its zones: "
            f"{found}): no temperature is recorded and --cooldown cannot wait; fix: set thermal_zones in the "
            "device profile")


def nvmap_kib():
    """CUDA memory on a Jetson (NvMapMemUsed): the GPU allocates from the shared RAM outside the process RSS, so an
    ORT-GPU session's memory shows here only. None on other boards."""
    return proc_kib("NvMapMemUsed", MEMINFO)


VCGENCMD_FIX = "sudo usermod -aG video $USER, then log in again"


def throttle_reading():
    """(reading, problem) from `vcgencmd get_throttled`: ('throttled=0x0', None); (None, one line with the fix) when
    it fails, as for a user outside group video (it cannot open /dev/vchiq); (None, None) without vcgencmd."""
    result = command_output(["vcgencmd", "get_throttled"], 5)
    if result is None:
        return None, None
    found = re.search(r"throttled=(0x[0-9a-fA-F]+|\d+)", result[1])
    if result[0] == 0 and found:
        return found.group(0), None
    lines = [line.strip() for line in result[1].splitlines() if line.strip()]
    said = one_line(lines[0], 160) if lines else f"exit {result[0]}"
    if re.search(r"vchi|vcio|permission denied", result[1], re.IGNORECASE):  # 'failed to open vchiq instance'
        return None, (f"vcgencmd get_throttled failed ({said}): this user cannot read the board's throttling "
                      f"(/dev/vchiq); fix: {VCGENCMD_FIX}")
    return None, f"vcgencmd get_throttled failed ({said}): throttling is not recorded"


def first_line_of(argv, timeout):
    result = command_output(argv, timeout)
    if result is None:
        return None
    lines = [line for line in result[1].splitlines() if line.strip()]
    return lines[0].strip() if lines else f"(no output, exit {result[0]})"


def environment():
    """What can bias a timing right now: frequency policy, heat, throttling, load (pyperf keeps the same)."""
    freq = (read_text("/sys/devices/system/cpu/cpu0/cpufreq/scaling_cur_freq") or "").strip()
    zones, (throttled, throttle_problem) = temperatures(), throttle_reading()
    return {
        "time": utc_now(),
        "cpu_model": cpu_model(),
        "governor": (read_text("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor") or "").strip() or None,
        "cur_freq_mhz": int(freq) / 1000.0 if freq.isdigit() else None,
        "temperatures": zones,
        "max_temperature_c": hottest(zones),
        "throttled": throttled,
        "throttled_error": throttle_problem,
        "loadavg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "tegrastats": first_line_of(["tegrastats", "--interval", "200"], 1.5),
        "mem_available_kib": proc_kib("MemAvailable", "/proc/meminfo"),
    }


def os_name():
    release = read_text("/etc/os-release") or ""
    match = re.search(r'^PRETTY_NAME="?([^"\n]*)"?', release, re.MULTILINE)
    return match.group(1) if match else platform.platform()


def system_info():
    jetson = read_text("/etc/nv_tegra_release")
    return {"python": platform.python_version(), "executable": sys.executable, "machine": platform.machine(),
            "os": os_name(), "kernel": platform.release(), "platform": platform.platform(),
            "board": (read_text("/proc/device-tree/model") or "").strip("\x00\n ") or None,
            "jetson_release": one_line(jetson) if jetson else None, "emulated": emulated()}


def emulated():
    """Whether this CPU is qemu-user emulating the board's: the host kernel then has a binfmt entry for this very
    architecture (a native board runs its own binaries without one). Timings from emulation mean nothing."""
    entry = read_text("/proc/sys/fs/binfmt_misc/qemu-" + platform.machine())
    return bool(entry) and entry.splitlines()[0].strip() == "enabled"


# ---------------------------------------------------------------- preflight

def fix_hint(name, text):
    """What to do about a failed import or load, for the failures seen on boards (FIELD-NOTES)."""
    if "_ARRAY_API" in text or "multiarray failed to import" in text or "compiled using NumPy 1.x" in text:
        return f"{name} needs numpy<2: pip install 'numpy<2'"
    missing = re.search(r"No module named '([^'.]+)", text)
    if missing and missing.group(1) != RUNTIMES.get(name, name).split(".")[0]:
        return f"{name} needs {missing.group(1)}: pip install {missing.group(1)}"
    if missing:
        if name in ("tflite_runtime", "ai_edge_litert") and PY < (3, 7):
            return "no TFLite wheel exists for Python 3.6 (Jetson Nano): use onnxruntime, or a newer Python"
        if name == "ai_edge_litert" and PY < (3, 8):
            return f"no ai-edge-litert wheel for Python {PY[0]}.{PY[1]}: pip install tflite-runtime"
        return install_hint(name)
    if "SIGILL" in text and platform.machine() == "aarch64":
        return ("Illegal instruction: numpy 1.19.5's OpenBLAS does this on a Jetson Nano; set OPENBLAS_CORETYPE=ARMV8 "
                "in the interpreter's environment (a wrapper script as the profile's python), or pip install "
                "numpy==1.19.4")
    if "SIGSEGV" in text or "SIGILL" in text:
        return ("the runtime crashed: the wheel may not suit this CPU; under qemu, an x86 /proc/cpuinfo seen by an "
                "arm64 chroot does this (bind-mount an ARM cpuinfo)")
    return None


PIP_MANYLINUX2014 = (19, 3)  # the first pip that installs manylinux2014 wheels (ONNX Runtime's for aarch64)


def install_hint(name):
    """How to install a runtime here: `pip install ...`, or, where that fails (a system Python marked
    EXTERNALLY-MANAGED by PEP 668 as on Pi OS bookworm, a pip too old for manylinux2014 wheels as the Nano's pip 9,
    no pip), the same in a virtual environment under the board's workdir with pip upgraded first."""
    command = INSTALL.get(name, f"pip install {name}")
    venv = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "venv")
    in_venv = (f"run `{SETUP_COMMAND}` on the host: it makes a venv at {venv} with the runtimes that run on this "
               "board, and bench uses it")
    pip = pip_version()
    if pip is None:
        return f"this Python has no pip: {in_venv}"
    if externally_managed():
        return f"this Python is externally managed (PEP 668: pip says externally-managed-environment): {in_venv}"
    if pip < PIP_MANYLINUX2014:
        return f"pip {'.'.join(map(str, pip))} cannot install manylinux2014 wheels: {in_venv}"
    return command


def pip_version():
    """This interpreter's pip as a tuple, e.g. (9, 0, 1), or None without pip."""
    result = command_output([sys.executable, "-m", "pip", "--version"], 60)
    found = re.match(r"pip (\d+(?:\.\d+)*)", result[1]) if result and result[0] == 0 else None
    return tuple(int(part) for part in found.group(1).split(".")) if found else None


def externally_managed():
    """PEP 668: the system Python says pip must not install into it (outside a virtual environment)."""
    if sys.prefix != getattr(sys, "base_prefix", sys.prefix):
        return False
    return os.path.isfile(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED"))


def elf_bits(path):
    """32 or 64 from an ELF file's class byte (EI_CLASS), None if `path` is not an ELF file."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(5)
    except OSError:
        return None
    return {1: 32, 2: 64}.get(head[4]) if len(head) == 5 and head[:4] == b"\x7fELF" else None


def userland(machine=None, pointer_bytes=None, executable=None):
    """This Python's bits (pointer size, and its executable's ELF class) against the kernel's machine. A 32-bit
    userland is refused: 32-bit Raspberry Pi OS boots a 64-bit kernel on a Pi 4 (`uname -m` says aarch64), and no
    ONNX Runtime or ai-edge-litert wheel exists for it. The arguments stand in for this machine in tests."""
    machine = platform.machine() if machine is None else machine
    pointer_bits = 8 * (struct.calcsize("P") if pointer_bytes is None else pointer_bytes)
    elf = elf_bits(sys.executable if executable is None else executable)
    bits = 32 if 32 in (pointer_bits, elf) else 64
    report = {"machine": machine, "pointer_bits": pointer_bits, "executable_elf_bits": elf, "bits": bits,
              "problem": None}
    if bits == 32:
        kernel = "a 64-bit kernel" if machine in ("aarch64", "arm64", "x86_64") else "a kernel"
        image = ("Raspberry Pi OS (64-bit), bookworm (Raspberry Pi Imager: Raspberry Pi OS (64-bit) or Raspberry "
                 "Pi OS Lite (64-bit))" if machine.startswith(("aarch64", "arm")) else "a 64-bit OS")
        report["problem"] = (f"this board runs a 32-bit userland on {kernel} ({machine}): no ONNX Runtime or "
                             f"ai-edge-litert wheel exists for it; fix: install {image}")
    return report


def version_of(name):
    return getattr(sys.modules[RUNTIMES.get(name, name).split(".")[0]], "__version__", None)


def smoke_test(name, module):
    """One inference of the built-in x + x model: the runtime loads a model and computes, not only imports."""
    import numpy as np

    x = np.arange(4, dtype=np.float32).reshape(1, 4)
    blob = base64.b64decode(SMOKE_MODELS["onnx" if name == "onnxruntime" else "tflite"])
    if name == "onnxruntime":
        y = module.InferenceSession(blob, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    else:
        interpreter = module.Interpreter(model_content=blob)
        interpreter.allocate_tensors()
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
        interpreter.invoke()
        y = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    if not np.array_equal(y, x + x):
        raise AgentError(f"the smoke model computed {y.tolist()} for x + x with x = {x.tolist()}")


def probe_child(name):
    """The probe's child process: import, report the version, then (for a runtime) the smoke inference."""
    module = importlib.import_module(RUNTIMES.get(name, name))
    print_json({"version": version_of(name)})
    if name in RUNTIMES:
        smoke_test(name, module)
        print_json({"runs": True})


def probe(name, timeout=120):
    """Probe in a child process, so a crash or numpy's long ABI warning cannot take the agent down."""
    here = os.path.dirname(os.path.abspath(__file__))
    module = os.path.splitext(os.path.basename(__file__))[0]
    proc = subprocess.Popen([sys.executable, "-c", PROBE, here, module, name], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        out, err = proc.communicate(timeout=timeout)
        late = None
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        late = f"took over {timeout} s"
    found = {}
    for line in out.decode("utf-8", "replace").splitlines():
        if line.startswith("{"):
            found.update(json.loads(line))
    report = {"importable": "version" in found, "version": found.get("version"), "error": None, "fix": None}
    if name in RUNTIMES:
        report["runs"] = found.get("runs", False)
    if proc.returncode != 0:
        err = err.decode("utf-8", "replace")
        step = "smoke inference" if "version" in found else "import"
        report["error"] = f"{step} " + (late or child_failure(proc.returncode, err))
        report["fix"] = fix_hint(name, err + "\n" + report["error"])
    return report


def child_failure(returncode, err):
    if returncode < 0:
        return f"crashed with {signal.Signals(-returncode).name}"
    lines = [line for line in err.splitlines() if line.strip()]
    return "failed: " + one_line(lines[-1] if lines else f"exit {returncode}")


def disk_free(path):
    stats = os.statvfs(path)
    return {"path": os.path.abspath(path), "free_bytes": stats.f_bavail * stats.f_frsize}


def cmd_preflight(args):
    """Exit 0 whatever the board lacks: the host reads the report and decides."""
    try:
        report = preflight_report(args.runtime)
    except Exception as exc:
        report = {"error": error_line(exc)}
    print_json(report)
    return 0


def preflight_report(runtime_list):
    names = [name.strip() for name in runtime_list.split(",") if name.strip()]
    unknown = [name for name in names if name not in RUNTIMES and name != "tensorrt"]
    runtimes = {name: probe(name) if name != "tensorrt" else probe_tensorrt() for name in names if name not in unknown}
    for name in unknown:
        runtimes[name] = {"importable": False, "runs": False, "version": None, "error": "unknown runtime",
                          "fix": "choose from " + ", ".join(RUNTIMES)}
    report = {"schema": "tsprune-edge/agent-preflight", "schema_version": SCHEMA_VERSION}
    report.update(system_info())
    report.update({"numpy": probe("numpy"), "runtimes": runtimes, "cpu": cpu_info(),
                   "disk": disk_free("."), "mem_available_kib": proc_kib("MemAvailable", "/proc/meminfo"),
                   "mem_total_kib": proc_kib("MemTotal", "/proc/meminfo"), "environment": environment(),
                   "jetson_power": jetson_power(), "userland": userland()})
    report["notes"] = board_notes(report)
    return report


def board_notes(report):
    """What the board's sensors cannot tell, one line each with its fix: the host prints them before measuring."""
    env = report["environment"]
    notes = [thermal_note(env["temperatures"]), env["throttled_error"]]
    notes += (report["jetson_power"] or {}).get("notes", [])
    return [note for note in notes if note]


# ---------------------------------------------------------------- verify

def load_manifest(bundle):
    path = os.path.join(bundle, "manifest.json")
    try:
        return read_json(path)
    except (OSError, ValueError) as exc:
        raise AgentError(f"cannot read {path}: {error_line(exc)}") from exc


def manifest_files(manifest):
    """(file, sha256) for every file the manifest names: each artifact, the samples, the test split and torch's
    per-window errors on it."""
    entries = [manifest["artifacts"][fmt] for fmt in sorted(manifest.get("artifacts", {}))]
    entries += [manifest[key] for key in ("samples", "test_split", "torch_test_errors") if manifest.get(key)]
    return [(entry["file"], entry["sha256"]) for entry in entries]


def verify_bundle(bundle):
    files = []
    for name, expected in manifest_files(load_manifest(bundle)):
        path = os.path.join(bundle, name)
        actual = sha256_file(path) if os.path.isfile(path) else None
        files.append({"file": name, "expected": expected, "actual": actual, "ok": actual == expected})
    return {"schema": "tsprune-edge/agent-verify", "schema_version": SCHEMA_VERSION,
            "bundle": os.path.abspath(bundle), "ok": all(f["ok"] for f in files), "files": files}


def cmd_verify(args):
    try:
        report = verify_bundle(args.bundle)
    except Exception as exc:
        print_json({"ok": False, "bundle": os.path.abspath(args.bundle), "error": error_line(exc)})
        return EXIT_FAILED
    print_json(report)
    return 0 if report["ok"] else EXIT_NOT_OK


# ---------------------------------------------------------------- measure (the worker)

def import_runtime(name):
    try:
        module = importlib.import_module(RUNTIMES[name])
    except Exception as exc:
        raise AgentError(f"cannot import {name}: {error_line(exc)}") from exc
    return module, version_of(name)


def natural_key(name):
    """args_2 before args_10."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def check_inputs(found, artifact):
    expected = [entry["name"] for entry in artifact["inputs"]]
    if found != expected:
        raise AgentError(f"artifact inputs {found} do not match the manifest's {expected}")
    return found


class Model:
    """A loaded artifact: `feed` builds the input mapping once, `run` is what each timing covers."""

    inputs = ()

    def feed(self, arrays):
        return dict(zip(self.inputs, arrays))  # noqa: B905 (strict= needs Python 3.10; lengths checked at load)

    def after_timing(self, printed):
        """What ran, read again once the timings are taken (`printed`: what the runtime wrote to stdout)."""
        return {}


ORT_FALLBACK = re.compile(r"^(EP Error|Falling back to)")  # what ORT prints when it retries on other providers


def ort_providers(chosen, engine_cache, workspace_mb):
    """The providers argument: TensorRT's with an engine cache (kept in the board's workdir, so a fresh process
    loads the engine instead of building it again) and a workspace cap; the others by name."""
    if "TensorrtExecutionProvider" not in chosen or not engine_cache:
        return chosen
    os.makedirs(engine_cache, exist_ok=True)
    options = {"trt_engine_cache_enable": "True", "trt_engine_cache_path": os.path.abspath(engine_cache),
               "trt_max_workspace_size": str(workspace_mb << 20)}
    return [(p, options) if p == "TensorrtExecutionProvider" else p for p in chosen]


class OnnxModel(Model):
    """ONNX Runtime session; inputs fed in session order (history, calendar)."""

    def __init__(self, module, path, artifact, threads, providers, profile_prefix=None, engine_cache=None,
                 workspace_mb=None):
        options = module.SessionOptions()
        options.intra_op_num_threads = threads
        if profile_prefix:
            options.enable_profiling = True
            options.profile_file_prefix = profile_prefix
        available = module.get_available_providers()
        chosen = [p for p in providers if p in available and p != "CPUExecutionProvider"] + ["CPUExecutionProvider"]
        with CapturedStdout() as printed:  # ORT prints a provider that fails at load, and goes on without it
            self.session = module.InferenceSession(
                path, options, providers=ort_providers(chosen, engine_cache, workspace_mb or TRT_WORKSPACE_MB))
        self.inputs = check_inputs([i.name for i in self.session.get_inputs()], artifact)
        used = self.session.get_providers()
        self.info = {"intra_op_num_threads": threads, "providers_available": available,
                     "providers_requested": providers, "providers_used": used,
                     "providers_missing": [p for p in providers if p not in available], "fallback": None}
        if "TensorrtExecutionProvider" in chosen and engine_cache:
            self.info["trt_engine_cache"] = os.path.abspath(engine_cache)
        message = ort_fallback_message(printed.text)
        if message or [p for p in chosen if p not in used]:
            self.info["fallback"] = {"when": "load", "providers_before": chosen, "providers_after": used,
                                     "message": message}

    def run(self, feed):
        return self.session.run(None, feed)[0]

    def after_timing(self, printed):
        """ORT catches a provider's failure inside run(), prints it to stdout, moves the session to its fallback
        providers and retries there: the providers read at load may not be the ones that were timed."""
        before, after = self.info["providers_used"], self.session.get_providers()
        message = ort_fallback_message(printed)
        if after == before and message is None:
            return {}
        return {"providers_used": after, "fallback": {"when": "run", "providers_before": before,
                                                      "providers_after": after, "message": message}}


def ort_fallback_message(printed):
    """ORT's own lines about a fallback ('EP Error: ... using [...]', 'Falling back to [...] and retrying.')."""
    lines = [line.strip() for line in printed.splitlines() if ORT_FALLBACK.match(line.strip())]
    return one_line(" ".join(lines)) if lines else None


def engine_warnings(runtime):
    """The engine that ran, when it is not the one asked for: a CPU-only wheel, or a provider that fell back."""
    warnings = []
    if runtime.get("providers_missing"):
        warnings.append(f"providers missing: {', '.join(runtime['providers_missing'])} not in this onnxruntime "
                        f"build; ran on {', '.join(runtime['providers_used'])}")
    fallback = runtime.get("fallback")
    if fallback:
        warnings.append(f"provider fallback: at {fallback['when']}, {', '.join(fallback['providers_before'])} -> "
                        f"{', '.join(fallback['providers_after'])}" + (f" ({fallback['message']})"
                                                                       if fallback["message"] else ""))
    return warnings


class TfliteModel(Model):
    """TFLite interpreter (tflite_runtime or ai_edge_litert) through its signature runner."""

    def __init__(self, module, path, artifact, threads):
        with CapturedStderr() as log:  # the runtime names the delegate it creates only in its log
            interpreter = module.Interpreter(model_path=path, num_threads=threads)
            interpreter.allocate_tensors()  # the default delegate is applied here
        signatures = interpreter.get_signature_list()
        key = "serving_default" if "serving_default" in signatures else sorted(signatures)[0]
        self.runner = interpreter.get_signature_runner(key)
        self.inputs = check_inputs(sorted(signatures[key]["inputs"], key=natural_key), artifact)
        self.output = artifact["outputs"][0]["name"]
        if self.output not in signatures[key]["outputs"]:
            raise AgentError(f"artifact outputs {signatures[key]['outputs']} lack the manifest's {self.output}")
        self.info = {"num_threads": threads, "signature": key}
        self.info.update(tflite_delegate(interpreter, log.text))

    def run(self, feed):
        return self.runner(**feed)[self.output]


class CapturedStderr:
    """Capture what native code writes to fd 2 (where TFLite logs), then pass it on to stderr: nothing is hidden."""

    text = ""
    fd = 2

    def stream(self):
        return sys.stderr

    def __enter__(self):
        self.stream().flush()
        self.saved, self.file = os.dup(self.fd), tempfile.TemporaryFile()
        os.dup2(self.file.fileno(), self.fd)
        return self

    def __exit__(self, *exc_info):
        self.stream().flush()
        os.dup2(self.saved, self.fd)
        os.close(self.saved)
        self.file.seek(0)
        self.text = self.file.read().decode("utf-8", "replace")
        self.file.close()
        self.stream().write(self.text)
        return False


class CapturedStdout(CapturedStderr):
    """The same for fd 1, where ORT's Python layer prints a provider failure before it retries on another."""

    fd = 1

    def stream(self):
        return sys.stdout


def tflite_delegate(interpreter, log):
    """Which delegate ran the graph, as far as the Python API lets anyone know. Recent TFLite builds apply their
    default delegate (XNNPACK) at allocate_tensors unless the op resolver says not to; the interpreter does not name
    it, but its node list then holds DELEGATE nodes beside the ops they replaced, and the runtime logs the delegate
    it created. The delegated ops are those between a DELEGATE node's outputs and its inputs."""
    ops_details = getattr(interpreter, "_get_ops_details", None)
    named = sorted(set(re.findall(r"Created TensorFlow Lite (\S+) delegate", log)))
    if ops_details is None:
        return {"delegate": "unknown: this interpreter lists no nodes", "delegate_detail": {"named_in_log": named}}
    nodes = ops_details()
    delegates = [n for n in nodes if n["op_name"] == "DELEGATE"]
    ops = [n for n in nodes if n["op_name"] != "DELEGATE"]
    producer = {int(t): n["index"] for n in ops for t in n["outputs"]}
    by_index = dict((n["index"], n) for n in ops)
    delegated = set()
    for node in delegates:
        boundary = set(int(t) for t in node["inputs"])
        stack = [int(t) for t in node["outputs"]]
        while stack:
            tensor = stack.pop()
            index = producer.get(tensor)
            if tensor in boundary or index is None or index in delegated:
                continue
            delegated.add(index)
            stack.extend(int(t) for t in by_index[index]["inputs"] if t >= 0)
    if not delegates:
        text = f"none: the runtime's builtin kernels ran all {len(ops)} ops"
    else:
        name = " and ".join(named) if named else "unnamed"
        text = (f"{name} (default delegate): {len(delegated)} of {len(ops)} ops in {len(delegates)} delegate "
                f"node{'s' if len(delegates) > 1 else ''}")
    return {"delegate": text, "delegate_detail": {
        "delegate_nodes": len(delegates), "ops": len(ops), "ops_delegated": len(delegated),
        "ops_not_delegated": sorted(set(by_index[i]["op_name"] for i in by_index if i not in delegated)),
        "named_in_log": named}}


def open_model(args, module, path, artifact, profile_prefix=None):
    if args.format == "onnx":
        providers = [p.strip() for p in (args.providers or "").split(",") if p.strip()]
        return OnnxModel(module, path, artifact, args.threads, providers, profile_prefix, args.engine_cache,
                         args.trt_workspace_mb)
    return TfliteModel(module, path, artifact, args.threads)


def load_samples(bundle, manifest, artifact):
    """Per-input arrays (in the artifact's input order, cast to its dtypes) and the expected forecasts."""
    import numpy as np

    with np.load(os.path.join(bundle, manifest["samples"]["file"])) as data:
        if len(artifact["inputs"]) != len(SAMPLE_INPUTS):
            raise AgentError(f"artifact has {len(artifact['inputs'])} inputs; samples hold {SAMPLE_INPUTS}")
        inputs = [np.ascontiguousarray(data[name], dtype=artifact["inputs"][i]["dtype"])
                  for i, name in enumerate(SAMPLE_INPUTS)]
        return inputs, data["expected"]


def window(inputs, index):
    return [values[index:index + 1] for values in inputs]


def warm_up(run, feed, max_seconds):
    """Run blocks (>= WARMUP_BLOCK inferences and >= WARMUP_BLOCK_S) until two consecutive block medians agree
    within WARMUP_TOLERANCE (caches filled, clocks ramped up) or max_seconds is spent."""
    clock, block, medians, iterations, stopped = time.perf_counter, [], [], 0, "max_warmup"
    start = block_start = ended = clock()
    while ended - start < max_seconds:
        began = clock()
        run(feed)
        ended = clock()
        block.append(ended - began)
        iterations += 1
        if len(block) >= WARMUP_BLOCK and ended - block_start >= WARMUP_BLOCK_S:
            medians.append(statistics.median(block))
            block, block_start = [], ended
            if len(medians) >= 2 and abs(medians[-1] - medians[-2]) <= WARMUP_TOLERANCE * medians[-2]:
                stopped = "stable"
                break
    return {"iterations": iterations, "seconds": ended - start, "stopped": stopped, "block_min_iters": WARMUP_BLOCK,
            "block_min_s": WARMUP_BLOCK_S, "tolerance": WARMUP_TOLERANCE, "block_medians": medians,
            "max_seconds": max_seconds}


def timed_iterations(run, feed, min_time, min_iters, sampler=None):
    """One perf_counter pair per inference, until both min_time and min_iters are reached. An array of doubles
    keeps the harness' own memory at 8 bytes per inference, so peak RSS stays the model's. `sampler` (a
    ClockSampler) reads the clocks between two timings when it is due, never inside one."""
    clock, latencies = time.perf_counter, array.array("d")
    start = clock()
    while True:
        began = clock()
        run(feed)
        ended = clock()
        latencies.append(ended - began)
        if len(latencies) >= min_iters and ended - start >= min_time:
            return latencies
        if sampler is not None and ended >= sampler.due:
            sampler.sample()


# The clocks while timing, read between timed inferences: the frequencies (one small file per clock domain, a few
# microseconds each) at most every CLOCK_SAMPLE_S; the governors (one file per domain too) and vcgencmd (a process of
# ~10 ms on a Pi) at most every SLOW_SAMPLE_S, as timing starts and as it ends. A throttle that starts and ends
# inside a measurement shows only in these samples (or in a since-boot bit that changed).
CLOCK_SAMPLE_S = 0.1
SLOW_SAMPLE_S = 1.0
CLOCK_TOLERANCE = 0.03  # samples of one clock spread by more than this share of its highest: the clock changed
CPU_FREQ_GLOB = "sys/devices/system/cpu/cpu[0-9]*/cpufreq/scaling_cur_freq"  # kHz, per online CPU
DEVFREQ_GLOB = "sys/class/devfreq/*/cur_freq"  # Hz: a Jetson's GPU (57000000.gpu), other boards' GPU or memory
_THROTTLED = re.compile(r"throttled=(0x[0-9a-fA-F]+|\d+)")


def read_number(path):
    """An integer sysfs file through os.read: a third of the cost of open().read(), as it is read ten times a
    second; None where it cannot be read."""
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            text = os.read(fd, 64).strip()
        finally:
            os.close(fd)
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def clock_domains(paths):
    """One file per clock domain: the CPUs of a cpufreq policy share one folder (cpuN/cpufreq links to policyM)."""
    seen, kept = set(), []
    for path in paths:
        domain = os.path.realpath(os.path.dirname(path))
        if domain not in seen:
            seen.add(domain)
            kept.append(path)
    return kept


class ClockSampler:
    """Samples what can change a timing while it runs: the CPU frequency (the fastest CPU's, the one the model
    keeps busy: idle cores of a per-core policy report their own low clocks), each policy's governor, each devfreq
    device's frequency and, where the board has vcgencmd, the Pi's throttle bits. `root` is where /sys is
    found ('/' on a board; a fixture folder in tests)."""

    def __init__(self, root="/", vcgencmd=None):
        cpus = sorted(glob.glob(os.path.join(root, CPU_FREQ_GLOB)), key=natural_key)
        self.cpus_read = len(cpus)
        self.cpu_files = clock_domains(cpus)
        self.governor_files = [os.path.join(os.path.dirname(p), "scaling_governor") for p in self.cpu_files]
        self.devfreq_files = sorted(glob.glob(os.path.join(root, DEVFREQ_GLOB)))
        self.vcgencmd = vcgencmd if vcgencmd is not None else shutil.which("vcgencmd")
        self.cpu_mhz, self.devfreq_mhz, self.governors, self.throttled = [], {}, [], []
        self.samples = self.slow_samples = self.throttle_samples = 0
        self.spent = 0.0
        self.due = self.slow_due = 0.0

    def sample(self, full=False):
        """Read the frequencies; the governors and throttle bits too when `full` or due."""
        began = time.perf_counter()
        speeds = [khz for khz in (read_number(p) for p in self.cpu_files) if khz]
        if speeds:
            self.cpu_mhz = _spread(self.cpu_mhz, max(speeds) / 1000.0)
        for path in self.devfreq_files:
            hz = read_number(path)
            if hz:
                name = os.path.basename(os.path.dirname(path))
                self.devfreq_mhz[name] = _spread(self.devfreq_mhz.get(name, []), hz / 1e6)
        if full or began >= self.slow_due:
            self.slow_sample()
            self.slow_due = began + SLOW_SAMPLE_S
        self.samples += 1
        ended = time.perf_counter()
        self.spent += ended - began
        self.due = ended + CLOCK_SAMPLE_S

    def slow_sample(self):
        self.slow_samples += 1
        governors = [(read_text(p) or "").strip() for p in self.governor_files]
        seen = ",".join(sorted(set(g for g in governors if g)))
        if seen and (not self.governors or self.governors[-1] != seen):
            self.governors.append(seen)
        if not self.vcgencmd:
            return
        try:
            out = subprocess.run([self.vcgencmd, "get_throttled"], stdout=subprocess.PIPE,
                                 stderr=subprocess.DEVNULL, timeout=5).stdout.decode("utf-8", "replace")
        except (OSError, subprocess.SubprocessError):
            return
        found = _THROTTLED.search(out)
        if found:
            mask = int(found.group(1), 0)
            if mask not in self.throttled:
                self.throttled.append(mask)
            self.throttle_samples += 1

    def changes(self, gpu):
        """What changed while timing, one phrase each: the CPU frequency or a governor; a devfreq device's
        frequency only where the model ran on a GPU (`gpu`): a CPU runtime does not wait for it."""
        found = []
        if _changed(self.cpu_mhz):
            found.append("CPU frequency {:.0f}-{:.0f} MHz".format(*self.cpu_mhz))
        if len(self.governors) > 1:
            found.append("governor " + " -> ".join(self.governors))
        for name in sorted(self.devfreq_mhz):
            if gpu and _changed(self.devfreq_mhz[name]):
                found.append("{} frequency {:.0f}-{:.0f} MHz".format(name, *self.devfreq_mhz[name]))
        return found

    def record(self, gpu=False):
        """The samples in the result: each clock's lowest and highest value, the governors and throttle masks in
        the order seen, the time the sampling took, and `changed` (what flags the measurement)."""
        return {"interval_s": CLOCK_SAMPLE_S, "slow_interval_s": SLOW_SAMPLE_S, "vcgencmd": bool(self.vcgencmd),
                "tolerance": CLOCK_TOLERANCE, "samples": self.samples, "slow_samples": self.slow_samples,
                "throttle_samples": self.throttle_samples, "seconds": self.spent, "cpus_read": self.cpus_read,
                "clock_domains": len(self.cpu_files), "cpu_mhz": self.cpu_mhz or None,
                "devfreq_mhz": self.devfreq_mhz, "governors": self.governors, "throttled": self.throttled,
                "changed": self.changes(gpu)}


def _spread(low_high, value):
    return [min(low_high[0], value), max(low_high[1], value)] if low_high else [value, value]


def _changed(low_high):
    return bool(low_high) and low_high[1] - low_high[0] > CLOCK_TOLERANCE * low_high[1]


def summarise(latencies):
    import numpy as np

    values = np.array(latencies, dtype=np.float64)
    p50, p90, p99 = np.percentile(values, [50, 90, 99])
    return {"unit": "s", "n": len(values), "total": float(values.sum()), "p50": float(p50), "p90": float(p90),
            "p99": float(p99), "mean": float(values.mean()), "std": float(values.std(ddof=1)) if len(values) > 1
            else 0.0, "min": float(values.min()), "max": float(values.max()),
            "throughput_per_s": float(len(values) / values.sum())}


def correctness(model, inputs, expected, artifact):
    import numpy as np

    errors = []
    for index in range(len(expected)):
        output = np.asarray(model.run(model.feed(window(inputs, index))))
        if output.shape != expected[index:index + 1].shape:
            wanted = [1] + list(expected.shape[1:])
            raise AgentError(f"output shape {list(output.shape)} differs from the samples' {wanted}")
        errors.append(float(np.max(np.abs(output.astype(np.float64) - expected[index:index + 1]))))
    tolerances = [v["tolerance"] for v in artifact.get("validation", []) if v.get("tolerance") is not None]
    tolerance = min(tolerances) if tolerances else None
    worst = max(errors)
    return {"windows": len(errors), "max_abs_error": worst, "per_window": errors, "tolerance": tolerance,
            "within_tolerance": None if tolerance is None else worst <= tolerance}


def load_test_split(bundle, manifest, artifact):
    """The scaled test series and its calendar, cast to the artifact's input dtypes, and the manifest's record."""
    import numpy as np

    record = manifest.get("test_split")
    if not record:
        raise AgentError("bundle has no test split: re-export it with this version of tsprune-edge")
    with np.load(os.path.join(bundle, record["file"]), allow_pickle=False) as data:
        series = [np.ascontiguousarray(data[name], dtype=artifact["inputs"][i]["dtype"])
                  for i, name in enumerate(("values", "calendar"))]
    return series, record


def split_windows(series, record):
    """(inputs, target) of every test window, cut as the trainer's window_arrays cuts them."""
    values, calendar = series
    seq_len, pred_len, targets = record["seq_len"], record["pred_len"], record["target_positions"]
    for start in range(record["windows"]):
        inputs = [values[start:start + seq_len][None], calendar[start:start + seq_len + pred_len][None]]
        yield inputs, values[start + seq_len:start + seq_len + pred_len, targets][None]


def accuracy(model, bundle, manifest, artifact):
    """MSE and MAE of the artifact over the whole test split, batch 1, as torch's evaluate computes them: the error
    in float32, squared and summed in float64, over every forecast value. Also each window's MSE (7 significant
    digits), from which the report puts an interval on the change against dense; `window_span` (seq_len +
    pred_len) says how far the windows overlap. A failure is reported, not raised: the timings already measured
    stand."""
    import numpy as np

    began = time.perf_counter()
    try:
        series, record = load_test_split(bundle, manifest, artifact)
        squared = absolute = 0.0
        count = 0
        per_window = []
        for inputs, target in split_windows(series, record):
            output = np.asarray(model.run(model.feed(inputs)))
            if output.shape != target.shape:
                raise AgentError(f"output shape {list(output.shape)} differs from the test targets' "
                                 f"{list(target.shape)}")
            error = (output - target).astype(np.float64)
            window_squared = float((error ** 2).sum())
            squared += window_squared
            absolute += float(np.abs(error).sum())
            count += error.size
            per_window.append(float(f"{window_squared / error.size:.7g}"))
    except Exception as exc:
        return {"error": error_line(exc)}
    return {"windows": record["windows"], "mse": squared / count, "mae": absolute / count,
            "per_window_mse": per_window, "window_span": record["seq_len"] + record["pred_len"],
            "seconds": time.perf_counter() - began}


def ort_profile(args, module, path, artifact, feed, iterations):
    """Per-op-type kernel time from ORT's profiler, in a separate session so profiling never touches the timings.

    Each node event is assigned to its run (the `model_run` events bound them); the first tenth of the runs (at
    least 5) are warm-up and left out, and each op's time is the median over the remaining runs, as is the run
    itself, so that kernels and the whole run come from the same runs and the rest is dispatch and copies."""
    folder = tempfile.mkdtemp(prefix="agent-profile-")
    warmup = max(5, iterations // 10)
    try:
        model = open_model(args, module, path, artifact, profile_prefix=os.path.join(folder, "ort"))
        for _ in range(iterations + warmup):
            model.run(feed)
        events = read_json(model.session.end_profiling())
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    runs = sorted((e["ts"], e["ts"] + e.get("dur", 0)) for e in events
                  if e.get("cat") == "Session" and e.get("name") == "model_run")
    starts = [run[0] for run in runs]
    per_run = [{} for _ in runs]
    for event in events:
        if event.get("cat") == "Node" and event.get("name", "").endswith("_kernel_time"):
            index = bisect.bisect_right(starts, event["ts"]) - 1
            if index < 0 or event["ts"] > runs[index][1]:
                continue
            op = event.get("args", {}).get("op_name", "?")
            total, count = per_run[index].get(op, (0, 0))
            per_run[index][op] = (total + event.get("dur", 0), count + 1)
    kept = per_run[warmup:] if len(per_run) > warmup else per_run
    names = set(op for run in kept for op in run)
    ops = [{"op_name": op, "us_per_inference": statistics.median([run.get(op, (0, 0))[0] for run in kept]),
            "calls_per_inference": statistics.median([run.get(op, (0, 0))[1] for run in kept]),
            "total_us": sum(run.get(op, (0, 0))[0] for run in kept)} for op in names]
    ops.sort(key=lambda op: -op["us_per_inference"])
    durations = [end - begin for begin, end in runs[warmup:]] if len(runs) > warmup else []
    return {"available": True, "iterations": len(kept), "warmup_runs": warmup, "ops": ops,
            "model_run_us": statistics.median(durations) if durations else None}


def stability_warnings(latency, env_before, env_after, clocks=None):
    """Flag what makes a number untrustworthy, each with what to do (pyperf's habit)."""
    warnings = []
    if latency["std"] >= 0.1 * latency["mean"]:
        share = 100 * latency["std"] / latency["mean"]
        warnings.append(f"unstable: std is {share:.0f}% of the mean; stop other work, set the governor to "
                        "performance, check cooling")
    if latency["max"] > 3 * latency["p50"]:
        ratio = latency["max"] / latency["p50"]
        warnings.append(f"outliers: max is {ratio:.1f}x the median; compare p50, not the mean")
    if latency["p50"] < 1e-3:
        warnings.append("median under 1 ms: the Python call overhead is part of each timing; compare variants "
                        "within one runtime only")
    for env in (env_before, env_after):
        if env["governor"] not in (None, "performance"):
            warnings.append(f"governor is {env['governor']}: set performance to remove frequency scaling")
            break
    throttled = env_after["throttled"] or ""
    if "=" in throttled and throttled.split("=")[-1] not in ("0x0", "0"):
        warnings.append(f"board reports {throttled}: under-voltage or heat throttling; fix power/cooling")
    if clocks and clocks["changed"]:
        warnings.append(f"clocks changed while timing: {'; '.join(clocks['changed'])}; fix: set the governor to "
                        "performance (a Jetson: sudo jetson_clocks), check cooling and power")
    return warnings


def artifact_record(manifest, artifact, path):
    """The artifact measured, and whether it is the one the manifest names."""
    actual = sha256_file(path)
    return {"variant": manifest.get("variant"), "model": manifest.get("model", {}).get("name"),
            "file": artifact["file"], "bytes": os.path.getsize(path), "sha256": actual,
            "manifest_sha256": artifact.get("sha256"), "sha256_ok": actual == artifact.get("sha256")}


def measure(args, result):
    """Fill `result` step by step, so a failure still returns what was measured before it."""
    bundle = args.bundle
    if args.runtime not in FORMAT_RUNTIMES[args.format]:
        raise AgentError(f"runtime {args.runtime} cannot run {args.format}; use "
                         + " or ".join(FORMAT_RUNTIMES[args.format]))
    manifest = load_manifest(bundle)
    if args.format not in manifest.get("artifacts", {}):
        raise AgentError(f"the bundle has no {args.format} artifact")
    artifact = manifest["artifacts"][args.format]
    path = os.path.join(bundle, artifact["file"])
    result["artifact"] = artifact_record(manifest, artifact, path)
    module, version = import_runtime(args.runtime)
    import numpy

    result["runtime"] = {"name": args.runtime, "version": version, "numpy": numpy.__version__}
    memory = result["memory_kib"]
    memory["rss_after_imports"] = proc_kib("VmRSS")
    inputs, expected = load_samples(bundle, manifest, artifact)
    began = time.perf_counter()
    model = open_model(args, module, path, artifact)
    result["load_s"] = time.perf_counter() - began
    memory["rss_after_load"] = proc_kib("VmRSS")
    result["nvmap_kib"]["after_load"] = nvmap_kib()  # a Jetson's GPU memory: not in the RSS
    result["runtime"].update(model.info)
    feed = model.feed(window(inputs, 0))
    with CapturedStdout() as printed:  # where ORT says it fell back inside run()
        began = time.perf_counter()
        model.run(feed)
        result["first_inference_s"] = time.perf_counter() - began
        gc.disable()  # as timeit: a collection inside one timing is noise, not the model
        try:
            result["warmup"] = warm_up(model.run, feed, args.max_warmup)
            sampler = ClockSampler()
            sampler.sample(full=True)  # every clock as timing starts; again as it ends
            latencies = timed_iterations(model.run, feed, args.min_time, args.min_iters, sampler)
            sampler.sample(full=True)
        finally:
            gc.enable()
    result["runtime"].update(model.after_timing(printed.text))
    gpu = any(p != "CPUExecutionProvider" for p in result["runtime"].get("providers_used", []))
    result["clocks"] = sampler.record(gpu)
    memory["rss_after_timing"] = proc_kib("VmRSS")
    memory["peak_rss"] = proc_kib("VmHWM")  # read before the report's own lists grow the process
    result["nvmap_kib"]["after_timing"] = nvmap_kib()
    result["latency"] = summarise(latencies)
    result["latencies_s"] = [round(value, 9) for value in latencies]  # perf_counter resolves ns at best
    result["correctness"] = correctness(model, inputs, expected, artifact)
    if args.accuracy:
        result["accuracy"] = accuracy(model, bundle, manifest, artifact)
    if args.profile:
        result["profile"] = (ort_profile(args, module, path, artifact, feed, args.min_iters) if args.format == "onnx"
                             else {"available": False, "note": "the Python TFLite interpreter exposes no per-op "
                                   "profiler; use TFLite's benchmark_model --enable_op_profiling=true"})


def cmd_measure(args):
    result = {"schema": "tsprune-edge/agent-measure", "schema_version": SCHEMA_VERSION, "started_at": time.time(),
              "started": utc_now(), "pid": os.getpid(), "memory_kib": {"rss_start": proc_kib("VmRSS")},
              "nvmap_kib": {"start": nvmap_kib()},
              "settings": {"bundle": os.path.abspath(args.bundle), "format": args.format, "runtime": args.runtime,
                           "threads": args.threads, "min_time": args.min_time, "min_iters": args.min_iters,
                           "max_warmup": args.max_warmup, "profile": args.profile, "accuracy": args.accuracy,
                           "providers": args.providers, "batch": 1, "window": 0, "gc_disabled_while_timing": True},
              "system": system_info(), "environment_before": environment()}
    try:
        (measure_tensorrt if args.runtime == "tensorrt" else measure)(args, result)
    except Exception as exc:
        hint = fix_hint(args.runtime, error_line(exc))
        result["error"] = error_line(exc) + (f" (fix: {hint})" if hint else "")
    result["environment_after"] = environment()
    if "latency" in result:
        result["warnings"] = stability_warnings(result["latency"], result["environment_before"],
                                                result["environment_after"], result.get("clocks"))
        result["warnings"] += engine_warnings(result.get("runtime", {}))
        if not result["artifact"]["sha256_ok"]:
            result["warnings"].append("artifact sha256 differs from the manifest: run verify and re-copy the bundle")
    try:
        write_json(args.out, result)
    except OSError as exc:
        result["error"] = f"cannot write {args.out}: {error_line(exc)}"
    summary = {"ok": "error" not in result, "out": os.path.abspath(args.out)}
    if "error" in result:
        summary["error"] = result["error"]
    else:
        summary.update({"p50_s": result["latency"]["p50"], "max_abs_error": result["correctness"]["max_abs_error"]})
    print_json(summary)
    return EXIT_FAILED if "error" in result else 0


# ---------------------------------------------------------------- Jetson: power mode, clocks, TensorRT (trtexec)

TRTEXEC = "/usr/src/tensorrt/bin/trtexec"  # where JetPack installs it (not on PATH)
TRT_WORKSPACE_MB = 256  # the Nano's 4 GB is shared by CPU and GPU: a large workspace gets engine builds killed
TRT_TOLERANCE = {"fp32": None, "fp16": 0.05}  # fp16 keeps ~3 significant digits; None: the bundle's own tolerance
TRT_TIME_KEYS = ("startComputeMs", "latencyMs", "computeMs")  # per record of trtexec --exportTimes (TensorRT 8.x)
_TRT_LOG_PREFIX = re.compile(r"^(\[[^\]]*\]\s*)+")  # "[12/01/2026-10:32:46] [E] [TRT] " before the message


def jetson_power():
    """On a Jetson: the nvpmodel power mode and whether the clocks are locked as jetson_clocks locks them, with a
    warning and its fix when either spoils a measurement, and a note where that cannot be told; None elsewhere."""
    nvpmodel = shutil.which("nvpmodel") or ("/usr/sbin/nvpmodel" if os.path.exists("/usr/sbin/nvpmodel") else None)
    if nvpmodel is None:
        return None
    state = {"power_mode": parse_nvpmodel(command_output([nvpmodel, "-q"], 10)), "clocks_locked": None,
             "warnings": [], "notes": []}
    clocks = shutil.which("jetson_clocks") or ("/usr/bin/jetson_clocks"
                                               if os.path.exists("/usr/bin/jetson_clocks") else None)
    if clocks:
        state["clocks_locked"] = parse_jetson_clocks(command_output([clocks, "--show"], 10))
    mode = state["power_mode"]
    if mode is None or mode["name"] != "MAXN":
        state["warnings"].append(f"power mode is {mode['name'] if mode else 'unknown'}, not MAXN: timings are "
                                 "slower than the board can be; fix: sudo nvpmodel -m 0 && sudo jetson_clocks")
    if state["clocks_locked"] is False:
        state["warnings"].append("clocks are not locked (frequency scaling changes timings); fix: sudo jetson_clocks")
    elif state["clocks_locked"] is None:
        state["notes"].append(clocks_unknown(clocks, os.geteuid() == 0))
    return state


def clocks_unknown(clocks, root):
    """Why the clock state is unknown, in one line: jetson_clocks --show reads the clocks only as root."""
    if clocks is None:
        return "clocks locked: unknown (no jetson_clocks on this board)"
    if not root:
        return "clocks locked: unknown, run as root to check (sudo jetson_clocks --show)"
    return "clocks locked: unknown (jetson_clocks --show printed no CPU, GPU or EMC frequencies)"


def parse_nvpmodel(result):
    """`nvpmodel -q` prints 'NV Power Mode: MAXN' and then the mode's number."""
    if result is None or result[0] != 0:
        return None
    name = re.search(r"NV Power Mode:\s*(\S+)", result[1])
    number = re.search(r"^\s*(\d+)\s*$", result[1], re.MULTILINE)
    return {"name": name.group(1), "id": int(number.group(1)) if number else None} if name else None


def parse_jetson_clocks(result):
    """`jetson_clocks --show` lists each CPU, the GPU and EMC with MinFreq/MaxFreq/CurrentFreq: locked as
    jetson_clocks locks them, that is every online CPU and the GPU at min = max = current, and EMC either so or
    pinned through `FreqOverride=1` at its maximum (jetson_clocks leaves EMC's MinFreq below MaxFreq). Other units
    (DLA, PVA) are not what it pins. None when it cannot tell (without root it prints no frequencies)."""
    if result is None or result[0] != 0:
        return None
    states = []
    for line in result[1].splitlines():
        unit = re.match(r"\s*(cpu\d+|GPU|EMC)\b", line)
        freqs = re.search(r"MinFreq=(\d+)\s+MaxFreq=(\d+)\s+CurrentFreq=(\d+)", line)
        if not unit or not freqs or "Online=0" in line:
            continue
        low, high, now = (int(value) for value in freqs.groups())
        override = unit.group(1) == "EMC" and re.search(r"FreqOverride=1\b", line) is not None
        states.append(now == high and (low == high or override))
    return all(states) if states else None


def trtexec_path():
    return shutil.which("trtexec") or (TRTEXEC if os.access(TRTEXEC, os.X_OK) else None)


def trtexec_version(trtexec):
    """'8.2.1' from the banner trtexec prints first ('&&&& RUNNING TensorRT.trtexec [TensorRT v8201] ...')."""
    result = command_output([trtexec, "--help"], 60)
    match = re.search(r"TensorRT v(\d)(\d)(\d\d)", result[1] if result else "")
    return f"{match.group(1)}.{match.group(2)}.{int(match.group(3))}" if match else None


def probe_tensorrt():
    trtexec = trtexec_path()
    if trtexec is None:
        return {"importable": False, "runs": False, "version": None, "path": None,
                "error": f"no trtexec on PATH or at {TRTEXEC}",
                "fix": "install TensorRT (JetPack: sudo apt install tensorrt), or measure ONNX Runtime only"}
    version = trtexec_version(trtexec)
    return {"importable": True, "runs": version is not None, "version": version, "path": trtexec,
            "error": None if version else "trtexec --help printed no TensorRT version", "fix": None}


def trtexec_build_argv(trtexec, onnx_path, engine_path, precision, workspace_mb=TRT_WORKSPACE_MB):
    """Build (and save) an engine; one inference only, the timing runs separately from the saved engine."""
    argv = [trtexec, "--onnx=" + onnx_path, "--saveEngine=" + engine_path, "--workspace=" + str(workspace_mb),
            "--warmUp=0", "--duration=0", "--iterations=1"]
    return argv + ["--fp16"] if precision == "fp16" else argv


def trtexec_time_argv(trtexec, engine_path, inputs, times_path, output_path, min_time, min_iters, warmup_ms):
    """Time the saved engine on the sample window (raw float files), per-iteration times to `times_path` and the
    last output to `output_path`. trtexec reads --loadInputs as name:file pairs split on ',' and ':'."""
    for name, path in inputs:
        if "," in path or ":" in path or "," in name or ":" in name:
            raise AgentError(f"trtexec cannot load {name} from {path}: ',' and ':' separate its --loadInputs")
    return [trtexec, "--loadEngine=" + engine_path, "--loadInputs=" + ",".join(f"{n}:{p}" for n, p in inputs),
            "--exportTimes=" + times_path, "--exportOutput=" + output_path, f"--warmUp={int(warmup_ms)}",
            f"--duration={int(math.ceil(min_time))}", f"--iterations={int(min_iters)}", "--avgRuns=1",
            "--useSpinWait"]


def parse_export_times(text, warmup_ms):
    """Per-iteration seconds from trtexec --exportTimes: a JSON list of records (startEnqMs, endEnqMs, startH2dMs,
    endH2dMs, startComputeMs, endComputeMs, startD2hMs, endD2hMs, h2dMs, computeMs, d2hMs, latencyMs, endToEndMs)
    that includes the warm-up; as trtexec's own summary, iterations whose compute started before warmup_ms are
    warm-up. latency = H2D + compute + D2H of one query; compute = the GPU's share."""
    try:
        records = json.loads(text)
    except ValueError as exc:
        raise AgentError(f"trtexec's --exportTimes file is not JSON: {error_line(exc)}") from exc
    if not isinstance(records, list):
        raise AgentError("trtexec's --exportTimes file is not a list of iterations")
    timed = [r for r in records if isinstance(r, dict) and all(k in r for k in TRT_TIME_KEYS)
             and r["startComputeMs"] >= warmup_ms]
    if not timed:
        raise AgentError(f"trtexec's --exportTimes holds no iteration after the {warmup_ms} ms warm-up")
    return {"latency_s": [r["latencyMs"] / 1e3 for r in timed], "compute_s": [r["computeMs"] / 1e3 for r in timed],
            "warmup_iterations": len(records) - len(timed)}


def parse_export_output(text, name):
    """The values of output `name` from trtexec --exportOutput ([{"name", "dimensions": "1x96x7", "values"}])."""
    for binding in json.loads(text):
        if binding.get("name") == name:
            return [int(d) for d in str(binding["dimensions"]).split("x")], binding["values"]
    raise AgentError(f"trtexec's --exportOutput has no output {name}")


def trtexec_failure(returncode, output, what):
    """One line: what trtexec could not do, from its first error line (the later ones only repeat that the
    engine failed), with the fix for the usual cases."""
    errors = [_TRT_LOG_PREFIX.sub("", line).strip() for line in output.splitlines()
              if "[E]" in line or "ERROR" in line]
    reason = errors[0] if errors else (f"killed by {signal.Signals(-returncode).name}" if returncode < 0
                                        else f"exit {returncode}")
    hint = ""
    if returncode in (-9, 137) or "out of memory" in output.lower():
        hint = "; fix: free memory (close other programs, add swap) or lower the workspace"
    elif "No importer registered" in output or "While parsing node" in output or "opset" in reason.lower():
        hint = "; fix: tsprune-edge export --device jetson-nano (opset 13, LayerNorm and GELU decomposed)"
    return f"trtexec could not {what}: {one_line(reason, 300)}{hint}"


def parse_tegrastats(line):
    """RAM in use (shared by CPU and GPU on a Jetson) and GPU load from one tegrastats line
    ('RAM 2186/3964MB (lfb 148x4MB) SWAP 0/1982MB ... GR3D_FREQ 12%@921 ...')."""
    ram = re.search(r"RAM (\d+)/(\d+)MB", line or "")
    gpu = re.search(r"GR3D_FREQ (\d+)%", line or "")
    if not ram:
        return None
    return {"ram_used_mb": int(ram.group(1)), "ram_total_mb": int(ram.group(2)),
            "gpu_load_percent": int(gpu.group(1)) if gpu else None}


def run_logged(argv, timeout):
    """(returncode, stdout and stderr together, seconds) of a command; a timeout counts as a failure."""
    began = time.monotonic()
    try:
        proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        return -9, (exc.output or b"").decode("utf-8", "replace") + f"\n[E] timed out after {timeout} s", timeout
    return proc.returncode, proc.stdout.decode("utf-8", "replace"), time.monotonic() - began


def shared_memory_during(argv, timeout):
    """Run argv while tegrastats samples every 100 ms: (returncode, output, seconds, peak RAM record or None)."""
    stats = None
    if shutil.which("tegrastats"):
        stats = subprocess.Popen(["tegrastats", "--interval", "100"], stdout=subprocess.PIPE,
                                 stderr=subprocess.DEVNULL)
    try:
        returncode, output, seconds = run_logged(argv, timeout)
    finally:
        lines = []
        if stats is not None:
            stats.terminate()
            lines = stats.communicate()[0].decode("utf-8", "replace").splitlines()
    samples = [s for s in (parse_tegrastats(line) for line in lines) if s]
    peak = max(samples, key=lambda s: s["ram_used_mb"]) if samples else None
    return returncode, output, seconds, peak


def engine_path(args, sha256, version):
    """Where the engine of this artifact and precision lives: in the engine cache (the board's workdir, kept
    between benches) under the artifact's sha256, the precision and the TensorRT version, so a changed model or
    TensorRT never loads a stale engine; without a cache, beside the bundle for this run's later rounds."""
    if not args.engine_cache:
        return os.path.join(args.bundle, f"model.{args.precision}.engine")
    os.makedirs(args.engine_cache, exist_ok=True)
    name = f"{sha256}.{args.precision}.trt{version or 'unknown'}.engine"
    return os.path.join(os.path.abspath(args.engine_cache), name)


def measure_tensorrt(args, result):
    """One round of an ONNX artifact in TensorRT: build the engine once per artifact, precision and TensorRT
    version (`engine_path`), its build time reported apart and never timed, then time it with trtexec on the first
    sample window; its output there is the correctness."""
    import numpy as np

    manifest = load_manifest(args.bundle)
    artifact = manifest.get("artifacts", {}).get("onnx")
    if artifact is None:
        raise AgentError("the bundle has no onnx artifact for TensorRT")
    path = os.path.join(args.bundle, artifact["file"])
    result["artifact"] = artifact_record(manifest, artifact, path)
    trtexec = trtexec_path()
    if trtexec is None:
        raise AgentError(probe_tensorrt()["error"])
    version = trtexec_version(trtexec)
    result["runtime"] = {"name": "tensorrt", "version": version, "precision": args.precision,
                         "trtexec": trtexec, "workspace_mb": args.trt_workspace_mb}
    engine = engine_path(args, result["artifact"]["sha256"], version)
    result["engine"] = {"file": os.path.basename(engine), "built_this_round": not os.path.exists(engine),
                        "cache": os.path.abspath(args.engine_cache) if args.engine_cache else None}
    if result["engine"]["built_this_round"]:
        partial = f"{engine}.part{os.getpid()}"  # two benches building the same engine never share a file
        build = trtexec_build_argv(trtexec, path, partial, args.precision, args.trt_workspace_mb)
        returncode, output, seconds = run_logged(build, 3600)
        if returncode != 0 or not os.path.isfile(partial):
            if os.path.exists(partial):
                os.unlink(partial)
            raise AgentError(trtexec_failure(returncode, output, f"build a {args.precision} engine from "
                                             f"{artifact['file']}"))
        os.replace(partial, engine)
        result["engine"]["build_s"] = seconds
    result["engine"]["bytes"] = os.path.getsize(engine)
    inputs, expected = load_samples(args.bundle, manifest, artifact)
    work = tempfile.mkdtemp(prefix="trt-", dir=os.path.dirname(os.path.abspath(args.out)))
    try:
        feeds = []
        for entry, values in zip(artifact["inputs"], window(inputs, 0)):  # noqa: B905 (Python 3.6)
            feeds.append((entry["name"], os.path.join(work, entry["name"] + ".bin")))
            values.tofile(feeds[-1][1])
        times, output = os.path.join(work, "times.json"), os.path.join(work, "output.json")
        warmup_ms = 1000 * min(args.max_warmup, 2.0)
        argv = trtexec_time_argv(trtexec, engine, feeds, times, output, args.min_time, args.min_iters, warmup_ms)
        returncode, log, seconds, peak = shared_memory_during(argv, 3600)
        if returncode != 0 or not os.path.isfile(times):
            raise AgentError(trtexec_failure(returncode, log, f"run the {args.precision} engine"))
        parsed = parse_export_times(read_text(times), warmup_ms)
        result["latency"] = summarise(parsed["latency_s"])
        result["latencies_s"] = [round(value, 9) for value in parsed["latency_s"]]
        result["gpu_compute"] = summarise(parsed["compute_s"])
        result["warmup"] = {"iterations": parsed["warmup_iterations"], "seconds": warmup_ms / 1000}
        result["shared_memory_peak"] = peak  # tegrastats: RAM is shared by CPU and GPU on a Jetson
        shape, values = parse_export_output(read_text(output), artifact["outputs"][0]["name"])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    got = np.asarray(values, dtype=np.float64).reshape(shape)
    if got.shape != expected[:1].shape:
        raise AgentError(f"TensorRT output shape {list(got.shape)} differs from the samples' "
                         f"{list(expected[:1].shape)}")
    error = float(np.max(np.abs(got - expected[:1])))
    tolerances = [v["tolerance"] for v in artifact.get("validation", []) if v.get("tolerance") is not None]
    tolerance = TRT_TOLERANCE[args.precision] or (min(tolerances) if tolerances else None)
    result["correctness"] = {"windows": 1, "max_abs_error": error, "per_window": [error], "tolerance": tolerance,
                             "within_tolerance": None if tolerance is None else error <= tolerance}
    result["memory_kib"]["peak_rss"] = None  # trtexec is a separate process; see shared_memory_peak
    result["load_s"] = None


# ---------------------------------------------------------------- run (the orchestrator)

def require(condition, message):
    if not condition:
        raise AgentError("plan: " + message)


def check_item(item):
    require(isinstance(item, dict) and isinstance(item.get("id"), str) and ITEM_ID.match(item["id"]),
            f"each item needs an id of letters, digits, . _ - (got {item!r})")
    name = item["id"]
    require(item.get("format") in FORMAT_RUNTIMES, f"{name}: format is onnx or tflite")
    require(item.get("runtime") in FORMAT_RUNTIMES.get(item["format"], ()),
            f"{name}: runtime for {item['format']} is one of {', '.join(FORMAT_RUNTIMES[item['format']])}")
    require(isinstance(item.get("threads"), int) and item["threads"] >= 1, f"{name}: threads >= 1")
    require(isinstance(item.get("bundle"), str), f"{name}: bundle is a folder")
    require(isinstance(item.get("providers", []), list), f"{name}: providers is a list")
    require(isinstance(item.get("engine_cache", ""), str), f"{name}: engine_cache is a folder")
    workspace = item.get("trt_workspace_mb", 1)
    require(isinstance(workspace, int) and workspace >= 1, f"{name}: trt_workspace_mb is MB >= 1")
    # A board may keep each runtime in its own environment (tflite_runtime needs numpy<2, ai_edge_litert numpy 2).
    require(isinstance(item.get("python", ""), str), f"{name}: python is the interpreter's path")


def load_plan(path):
    try:
        plan = read_json(path)
    except (OSError, ValueError) as exc:
        raise AgentError(f"cannot read plan {path}: {error_line(exc)}") from exc
    require(isinstance(plan, dict) and isinstance(plan.get("items"), list) and plan["items"], "needs a list `items`")
    for item in plan["items"]:
        check_item(item)
    ids = [item["id"] for item in plan["items"]]
    require(len(set(ids)) == len(ids), "item ids must be unique")
    require(isinstance(plan.get("rounds"), int) and plan["rounds"] >= 1, "rounds >= 1")
    require(isinstance(plan.get("min_iters"), int) and plan["min_iters"] >= 1, "min_iters >= 1")
    require(isinstance(plan.get("min_time"), (int, float)) and plan["min_time"] >= 0, "min_time >= 0")
    cooldown = plan.get("cooldown")
    require(cooldown is None or (isinstance(cooldown, dict) and {"max_seconds", "within_c"} <= set(cooldown)),
            "cooldown is null or {max_seconds, within_c}")
    zones = plan.get("thermal_zones", [])
    require(isinstance(zones, list) and all(isinstance(z, str) and z and "," not in z for z in zones),
            "thermal_zones is a list of zone types or temp-file paths, without commas")
    for key in ("max_warmup", "timeout"):
        require(isinstance(plan.get(key, 0), (int, float)) and plan.get(key, 0) >= 0, f"{key} is seconds >= 0")
    return plan


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_lock(path):
    try:
        holder = read_json(path)
    except (OSError, ValueError):
        return None
    return holder if isinstance(holder, dict) and isinstance(holder.get("pid"), int) and holder["pid"] > 0 else None


def acquire_lock(results):
    """Create the lock with O_EXCL; a lock whose pid is dead is stale and replaced. Returns (path, None) or
    (None, holder) while another run holds it; an unreadable lock counts as held, never silently broken."""
    path = os.path.join(results, LOCK_NAME)
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = read_lock(path)
            if holder is None or pid_alive(holder["pid"]):
                return None, holder or {"pid": None, "note": "unreadable lock file"}
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            continue
        with os.fdopen(fd, "w") as handle:
            json.dump({"pid": os.getpid(), "started_at": time.time(), "started": utc_now()}, handle)
        return path, None
    return None, read_lock(path) or {"pid": None, "note": "lock contended"}


def release_lock(path):
    holder = read_lock(path)
    if holder and holder["pid"] == os.getpid():
        os.unlink(path)


def finished(path):
    """A result file counts as done unless it records an error; failed measurements are retried on resume."""
    try:
        return "error" not in read_json(path)
    except (OSError, ValueError):
        return False


def cool_down(cooldown, baseline):
    """Wait (1 s polls) until the hottest zone is within `within_c` of the run's starting temperature."""
    if not cooldown:
        return None
    if baseline is None:
        return {"waited_s": 0.0, "reached": None, "note": "no thermal zones"}
    target, start = baseline + cooldown["within_c"], time.monotonic()
    current = first = max_temperature()
    while current is not None and current > target and time.monotonic() - start < cooldown["max_seconds"]:
        time.sleep(1.0)
        current = max_temperature()
    return {"waited_s": time.monotonic() - start, "target_c": target, "start_c": first, "end_c": current,
            "reached": current is not None and current <= target}


def worker_argv(item, plan, bundle, out, round_no=1, pass_no=1):
    """Profiling and the accuracy pass run in the first pass of the first round only: their outputs do not change
    between measurements."""
    argv = [item.get("python") or sys.executable, os.path.abspath(__file__), "measure", "--bundle", bundle,
            "--format", item["format"],
            "--runtime", item["runtime"], "--threads", str(item["threads"]), "--min-time", str(plan["min_time"]),
            "--min-iters", str(plan["min_iters"]), "--out", out]
    if plan.get("max_warmup") is not None:
        argv += ["--max-warmup", str(plan["max_warmup"])]
    if plan.get("thermal_zones"):
        argv += ["--thermal-zones", ",".join(plan["thermal_zones"])]
    if item.get("providers"):
        argv += ["--providers", ",".join(item["providers"])]
    if item.get("precision"):
        argv += ["--precision", item["precision"]]
    if item.get("engine_cache"):
        argv += ["--engine-cache", item["engine_cache"]]
    if item.get("trt_workspace_mb"):
        argv += ["--trt-workspace-mb", str(item["trt_workspace_mb"])]
    first = round_no == 1 and pass_no == 1
    if item.get("profile") and first:
        argv.append("--profile")
    if item.get("accuracy") and first:
        argv.append("--accuracy")
    return argv


def stderr_tail(err):
    return err.decode("utf-8", "replace")[-2000:]


def last_json_line(out):
    """The last JSON object a worker printed (its summary), or {}."""
    for line in reversed(out.decode("utf-8", "replace").splitlines()):
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return {}


def run_worker(argv, out, timeout):
    """One fresh process per measurement; a hang is killed at `timeout`, a failure recorded, never raised."""
    if os.path.exists(out):
        os.unlink(out)  # a failed earlier attempt: its error must not stand for this one
    began = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        stdout, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        return {"rc": proc.returncode, "wall_s": time.monotonic() - began, "status": "failed",
                "error": f"worker killed after {timeout} s", "stderr_tail": stderr_tail(err)}
    except BaseException:  # the run itself is being stopped: leave no worker behind
        proc.kill()
        proc.wait()
        raise
    record = {"rc": proc.returncode, "wall_s": time.monotonic() - began}
    p50 = last_json_line(stdout).get("p50_s")
    if p50 is not None:
        record["p50_s"] = p50  # for the progress line; the result file holds the measurement
    if os.path.isfile(out):
        error = read_json(out).get("error") or (f"worker exited {proc.returncode}" if proc.returncode else None)
    else:
        lines = [line for line in stderr_tail(err).splitlines() if line.strip()]
        error = f"worker exited {proc.returncode} without a result" + (": " + one_line(lines[-1]) if lines else "")
    record["status"] = "failed" if error else "measured"
    if error:
        record.update({"error": error, "stderr_tail": stderr_tail(err)})
    return record


PASSES_PER_ROUND = 2  # a forward pass, then the mirrored one
PASS_SUFFIXES = ("", "b")  # result file of pass p of round r: <id>__r<r><suffix>.json
ORDER_RULE = ("fold-over: round r runs the plan's items starting at item (r - 1) mod n, then the same items in "
              "reverse (A B C D | D C B A)")
RESULT_NAME = re.compile(r"__r(\d+)(b?)\.json$")


def round_order(items, round_no):
    """The measurements of round `round_no` (from 1) as (pass, item): the items rotated by one place per round,
    then the same items mirrored (A B C D | D C B A). Every item then sits at the same mean position in every
    round, so a drift linear within the round hits every item alike and cancels, and every item runs once before
    and once after every other, whatever the number of rounds and items; the rotation spreads what is left (a
    curved drift, the first process after a pause) over the positions. A pure function of the plan, so a resumed
    or extended run keeps the same order."""
    shift = (round_no - 1) % len(items)
    forward = items[shift:] + items[:shift]
    return [(1, item) for item in forward] + [(2, item) for item in reversed(forward)]


def result_name(item_id, round_no, pass_no):
    """The file of one measurement; pass 1 keeps the name runs had before the mirrored pass existed."""
    return f"{item_id}__r{round_no}{PASS_SUFFIXES[pass_no - 1]}.json"


def parse_result_name(name):
    """(round, pass) of a result file's name (as result_name writes it), or None for any other file."""
    found = RESULT_NAME.search(name)
    return (int(found.group(1)), 2 if found.group(2) else 1) if found else None


class Progress:
    """One JSON line per measurement on stdout, flushed, for the host's live display (it reads them as they come,
    over SSH too). A dropped connection must not stop the measuring: once stdout is gone, the events stop."""

    def __init__(self, total):
        self.total, self.count, self.began, self.open = total, 0, time.monotonic(), True

    def emit(self, event, item, round_no, rounds, position, record=None):
        if event != "measuring":
            self.count += 1
        data = {"event": event, "id": item["id"], "round": round_no, "rounds": rounds, "position": position,
                "format": item["format"], "runtime": item["runtime"], "threads": item["threads"],
                "done": self.count, "total": self.total, "elapsed_s": round(time.monotonic() - self.began, 3)}
        for key in ("wall_s", "p50_s", "error"):
            if record and record.get(key) is not None:
                data[key] = record[key]
        if self.open:
            try:
                print_json(data)
            except (OSError, ValueError):  # EPIPE: the host went away; the board goes on measuring
                self.open = False


def run_plan(plan, plan_dir, results):
    """Interleaved rounds: every item twice per round, in a forward then a mirrored pass, so drift and heat hit all
    variants alike (`round_order`); run.json records each round's order (`orders`, every measurement in the order
    it ran), `passes_per_round`, and each measurement's `pass` and `position` (1 .. 2n) in its round."""
    summary = {"schema": "tsprune-edge/agent-run", "schema_version": SCHEMA_VERSION, "plan": plan,
               "results": os.path.abspath(results), "started": utc_now(), "system": system_info(),
               "environment_start": environment(), "measurements": [], "order_rule": ORDER_RULE,
               "passes_per_round": PASSES_PER_ROUND,
               "orders": [[item["id"] for _, item in round_order(plan["items"], r)]
                          for r in range(1, plan["rounds"] + 1)]}
    baseline = summary["baseline_temperature_c"] = summary["environment_start"]["max_temperature_c"]
    progress = Progress(len(plan["items"]) * plan["rounds"] * PASSES_PER_ROUND)
    for round_no in range(1, plan["rounds"] + 1):
        for position, (pass_no, item) in enumerate(round_order(plan["items"], round_no), 1):
            name = result_name(item["id"], round_no, pass_no)
            out = os.path.join(results, name)
            record = {"id": item["id"], "round": round_no, "pass": pass_no, "position": position, "file": name}
            if finished(out):
                record["status"] = "skipped"
            else:
                progress.emit("measuring", item, round_no, plan["rounds"], position)
                record["cooldown"] = cool_down(plan.get("cooldown"), baseline)
                bundle = os.path.join(plan_dir, item["bundle"])
                argv = worker_argv(item, plan, bundle, out, round_no, pass_no)
                record.update(run_worker(argv, out, plan.get("timeout", 3600)))
            progress.emit(record["status"], item, round_no, plan["rounds"], position, record)
            summary["measurements"].append(record)
    summary["environment_end"] = environment()
    summary["finished"] = utc_now()
    summary["result_files"] = [m["file"] for m in summary["measurements"] if m["status"] != "failed"]
    summary["errors"] = [f"{m['id']} round {m['round']}{' pass 2' if m.get('pass') == 2 else ''}: {m['error']}"
                         for m in summary["measurements"] if m["status"] == "failed"]
    write_json(os.path.join(results, "run.json"), summary)
    return summary


def exit_on_signal(signum, frame):
    raise SystemExit(128 + signum)


def cmd_run(args):
    try:
        plan = load_plan(args.plan)
        os.makedirs(args.results, exist_ok=True)
        THERMAL_ZONES[:] = plan.get("thermal_zones", [])
    except Exception as exc:
        print_json({"ok": False, "error": error_line(exc)})
        return EXIT_FAILED
    lock_dir = args.lock_dir or args.results
    lock, holder = acquire_lock(lock_dir)
    if lock is None:
        lock_path = os.path.abspath(os.path.join(lock_dir, LOCK_NAME))
        print_json({"ok": False, "error": f"locked by pid {holder.get('pid')}: another run is measuring on this "
                    f"board; remove {lock_path} if none is active", "lock": holder})
        return EXIT_LOCKED
    for signum in (signal.SIGTERM, signal.SIGHUP):  # a dropped ssh session: release the lock, stop the worker
        signal.signal(signum, exit_on_signal)
    try:
        summary = run_plan(plan, os.path.dirname(os.path.abspath(args.plan)), args.results)
    finally:
        release_lock(lock)
    counts = {status: sum(m["status"] == status for m in summary["measurements"])
              for status in ("measured", "skipped", "failed")}
    print_json({"ok": not summary["errors"], "run_json": os.path.abspath(os.path.join(args.results, "run.json")),
                "counts": counts, "errors": summary["errors"]})
    return EXIT_NOT_OK if summary["errors"] else 0


# ---------------------------------------------------------------- command line

ZONES_HELP = ("the profile's thermal zones, comma-separated: zone types (CPU-therm) or temp-file paths "
              "(default: every zone but constant ones such as PMIC-Die)")


def parser():
    root = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = root.add_subparsers(dest="command")
    commands.required = True  # the keyword form needs Python 3.7
    pre = commands.add_parser("preflight", help="what this board has: Python, numpy, runtimes, CPU, memory, disk")
    pre.add_argument("--runtime", default=",".join(RUNTIMES), help="comma-separated runtimes to probe")
    pre.add_argument("--thermal-zones", default="", help=ZONES_HELP)
    ver = commands.add_parser("verify", help="check the sha256 of every file a bundle's manifest names")
    ver.add_argument("--bundle", required=True)
    mea = commands.add_parser("measure", help="measure one artifact in this process (the worker)")
    mea.add_argument("--bundle", required=True)
    mea.add_argument("--format", required=True, choices=sorted(FORMAT_RUNTIMES))
    mea.add_argument("--runtime", required=True, choices=[*RUNTIMES, "tensorrt"])
    mea.add_argument("--precision", default="fp32", choices=sorted(TRT_TOLERANCE), help="TensorRT engine precision")
    mea.add_argument("--threads", required=True, type=int)
    mea.add_argument("--min-time", type=float, default=2.0, help="seconds of timed inferences, at least")
    mea.add_argument("--min-iters", type=int, default=100, help="timed inferences, at least")
    mea.add_argument("--max-warmup", type=float, default=10.0, help="seconds of warm-up, at most")
    mea.add_argument("--providers", default="", help="ORT providers to use when available, comma-separated")
    mea.add_argument("--engine-cache", help="folder that keeps TensorRT engines between runs (the board's workdir)")
    mea.add_argument("--trt-workspace-mb", type=int, default=TRT_WORKSPACE_MB,
                     help="TensorRT builder workspace cap, MB")
    mea.add_argument("--profile", action="store_true", help="ORT per-op-type time, in a separate session")
    mea.add_argument("--accuracy", action="store_true",
                     help="run the bundle's test split through the artifact: MSE and MAE against the truth")
    mea.add_argument("--out", required=True)
    mea.add_argument("--thermal-zones", default="", help=ZONES_HELP)
    run = commands.add_parser("run", help="run a plan: interleaved rounds, one fresh worker per measurement")
    run.add_argument("--plan", required=True)
    run.add_argument("--results", required=True)
    run.add_argument("--lock-dir", help="folder of the lock that keeps runs apart (default: the results folder; "
                     "the host passes the board's work folder so that no two benches overlap on one board)")
    return root


def main(argv=None):
    args = parser().parse_args(argv)
    THERMAL_ZONES[:] = [zone for zone in getattr(args, "thermal_zones", "").split(",") if zone]
    return {"preflight": cmd_preflight, "verify": cmd_verify, "measure": cmd_measure, "run": cmd_run}[args.command](
        args)


if __name__ == "__main__":
    sys.exit(main())
