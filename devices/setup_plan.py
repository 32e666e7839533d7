"""What `devices setup` installs on a board, decided from facts read from the board first: the pinned versions per
board Python (the one place they are chosen), the board's wheel platform tags, and every refusal that must come
before anything is installed (no Python, a 32-bit userland, a Python no pinned runtime runs on, no room, a wheel
file built for another board). Torch-free and transport-free: facts in, a plan or one line out.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from tsprune_edge.devices.agent import userland
from tsprune_edge.devices.profiles import DeviceProfile
from tsprune_edge.errors import UserError

VENV = "venv"  # <workdir>/venv on the board: never the system Python (PEP 668 does not matter there)
RECORD = "setup.json"  # <workdir>/setup.json: written last, so a half-done setup never looks ready
WHEELS = "setup-wheels"  # <workdir>/setup-wheels: wheel files copied from this machine, removed after installing
NUMPY_WORKAROUND = {"OPENBLAS_CORETYPE": "ARMV8"}  # numpy 1.19.5's OpenBLAS dies with SIGILL on the Nano without it


@dataclass(frozen=True)
class Pins:
    """What runs on one board Python: pip, each runtime's requirements, and the agent's environment."""

    board: str  # the stock OS this Python is, for messages
    pip: str
    runtimes: dict[str, tuple[str, ...]]  # runtime module -> its requirements, dependencies pinned where they matter
    no_deps: tuple[str, ...] = ()  # installed without their declared dependencies (listed above instead)
    env: dict[str, str] = field(default_factory=dict)
    free_mb: int = 1024  # refuse a workdir with less free space: the wheels unpacked, with room to spare
    missing: dict[str, str] = field(default_factory=dict)  # runtime -> why none is installed here


_MODERN = dict(pip="pip>=23.1", free_mb=1024,
               runtimes={"onnxruntime": ("onnxruntime==1.32.0",), "ai_edge_litert": ("ai-edge-litert==2.3.0",)},
               missing={"tflite_runtime": "tflite-runtime is optional: ai-edge-litert runs the TFLite files "
                                          "(tflite-runtime needs numpy<2, a venv of its own: docs/boards.md)"})
# The one place versions are chosen, keyed by the board's Python (major, minor).
PINS: dict[tuple[int, int], Pins] = {
    # JetPack 4.6 (Ubuntu 18.04): pip 9 cannot install manylinux2014 wheels and 21.3.1 is the last pip for 3.6; ORT
    # 1.10.0 is the last cp36 wheel (CPU-only on PyPI) and declares numpy>=1.19.5, which dies with Illegal
    # instruction on the Nano: numpy 1.19.4 is installed and ORT without its declared dependencies, which are
    # listed here instead (protobuf >= 3.20 breaks on 3.6).
    (3, 6): Pins(board="JetPack 4.6 (Python 3.6)", pip="pip>=19.3,<22", free_mb=600,
                 runtimes={"onnxruntime": ("numpy==1.19.4", "protobuf<3.20", "flatbuffers", "onnxruntime==1.10.0")},
                 no_deps=("onnxruntime==1.10.0",), env=NUMPY_WORKAROUND,
                 missing={"tflite_runtime": "no TFLite wheel exists for Python 3.6",
                          "ai_edge_litert": "no ai-edge-litert wheel exists for Python 3.6"}),
    # Debian bullseye (the emulated Nano-class board): the Nano's recipe, whose wheels exist for cp39 aarch64 too.
    (3, 9): Pins(board="Debian bullseye (Python 3.9)", pip="pip>=19.3", free_mb=600,
                 runtimes={"onnxruntime": ("numpy==1.19.4", "protobuf<3.20", "flatbuffers", "onnxruntime==1.10.0")},
                 no_deps=("onnxruntime==1.10.0",), env=NUMPY_WORKAROUND,
                 missing={"tflite_runtime": "not installed by setup on Python 3.9",
                          "ai_edge_litert": "not installed by setup on Python 3.9"}),
    (3, 11): Pins(board="Raspberry Pi OS bookworm (Python 3.11)", **_MODERN),
    (3, 12): Pins(board="Python 3.12", **_MODERN),
    (3, 13): Pins(board="Raspberry Pi OS trixie (Python 3.13)", **_MODERN),
}
ORT_GPU_NOTE = ("no --wheel given: installed PyPI's CPU-only onnxruntime {version}; the {profile} profile expects "
                "{engines}, so bench says NOT JUDGED until you run setup again with --wheel "
                "onnxruntime_gpu-...-cp36-cp36m-linux_aarch64.whl (NVIDIA's Jetson Zoo)")


@dataclass(frozen=True)
class BoardFacts:
    """What one SSH round trip reads from the board (`FACTS_SCRIPT`), parsed."""

    python_found: bool
    python: tuple[int, int, int] | None
    machine: str
    long_bit: int | None
    pointer_bits: int | None
    elf_bits: int | None
    glibc: tuple[int, int] | None
    pip: tuple[int, ...] | None
    venv_works: bool
    free_kib: int | None
    os_name: str
    venv_exists: bool
    installed: dict[str, str]  # the venv's packages (normalized name -> version), {} without a venv
    record: dict | None  # the board's setup.json, None without one
    raw: dict[str, str]

    @property
    def python_text(self) -> str:
        return ".".join(map(str, self.python)) if self.python else "?"


# Run as `sh -c FACTS_SCRIPT sh WORKDIR PYTHON`: key=value lines, read by `parse_facts`. Every command may fail on
# a stock board; a missing value is an empty or absent line, never an error here.
_PY_FACTS = (
    "import os, struct, sys\n"
    "print('python=%d.%d.%d' % tuple(sys.version_info[:3]))\n"
    "print('pointer_bits=%d' % (8 * struct.calcsize('P')))\n"
    "try:\n"
    "    h = open(os.path.realpath(sys.executable), 'rb'); head = bytearray(h.read(5)); h.close()\n"
    "    print('elf_bits=%d' % {1: 32, 2: 64}.get(head[4], 0))\n"
    "except Exception:\n"
    "    pass\n"
    "try:\n"
    "    print('glibc=%s' % os.confstr('CS_GNU_LIBC_VERSION').split()[-1])\n"
    "except Exception:\n"
    "    pass\n"
    "try:\n"
    "    import ensurepip, venv\n"
    "    print('venv_works=1')\n"
    "except Exception:\n"
    "    print('venv_works=0')\n"
)
FACTS_SCRIPT = (
    'w="$1"; py="$2"\n'
    'echo "machine=$(uname -m)"\n'
    'echo "long_bit=$(getconf LONG_BIT 2>/dev/null)"\n'
    'if command -v "$py" >/dev/null 2>&1; then echo python_found=1; "$py" -c "$3" 2>/dev/null\n'
    '  echo "pip=$("$py" -m pip --version 2>/dev/null)"; else echo python_found=0; fi\n'
    'd="$w"; while [ ! -d "$d" ]; do d=$(dirname -- "$d"); done\n'
    'echo "free_kib=$(df -Pk -- "$d" 2>/dev/null | awk \'NR==2 {print $4}\')"\n'
    'if [ -r /etc/os-release ]; then echo "os=$(. /etc/os-release && echo "$PRETTY_NAME")"; fi\n'
    f'if [ -x "$w/{VENV}/bin/python" ]; then echo venv_exists=1\n'
    f'  echo "installed=$("$w/{VENV}/bin/python" -m pip list --format=json --disable-pip-version-check 2>/dev/null '
    "| tr -d '\\n')\"; fi\n"
    f'if [ -f "$w/{RECORD}" ]; then echo "record=$(tr -d \'\\n\' < "$w/{RECORD}")"; fi\n'
)


def facts_argv(profile: DeviceProfile) -> list[str]:
    return ["sh", "-c", FACTS_SCRIPT, "sh", profile.workdir, profile.python, _PY_FACTS]


def _int(text: str | None) -> int | None:
    return int(text) if text and text.strip().isdigit() else None


def _version(text: str | None, parts: int) -> tuple[int, ...] | None:
    found = re.match(r"(\d+(?:\.\d+)*)", text or "")
    return tuple(int(p) for p in found.group(1).split("."))[:parts] if found else None


def normalize(name: str) -> str:
    """A distribution's name as pip compares them (PEP 503): `ai_edge_litert` and `ai-edge-litert` are one."""
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_facts(stdout: str) -> BoardFacts:
    raw: dict[str, str] = {}
    for line in stdout.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.isidentifier():
            raw.setdefault(key, value.strip())
    installed: dict[str, str] = {}
    try:
        for package in json.loads(raw.get("installed") or "[]"):
            installed[normalize(package["name"])] = package["version"]
    except (ValueError, TypeError, KeyError):
        installed = {}
    try:
        record = json.loads(raw["record"]) if raw.get("record") else None
    except ValueError:
        record = {"damaged": True}  # a setup.json that is not JSON: a record that does not match, set up again
    pip = re.match(r"pip (\S+)", raw.get("pip", ""))
    return BoardFacts(
        python_found=raw.get("python_found") == "1", python=_version(raw.get("python"), 3),
        machine=raw.get("machine", ""), long_bit=_int(raw.get("long_bit")), pointer_bits=_int(raw.get("pointer_bits")),
        elf_bits=_int(raw.get("elf_bits")) or None, glibc=_version(raw.get("glibc"), 2),
        pip=_version(pip.group(1), 3) if pip else None, venv_works=raw.get("venv_works") == "1",
        free_kib=_int(raw.get("free_kib")), os_name=raw.get("os", ""), venv_exists=raw.get("venv_exists") == "1",
        installed=installed, record=record if isinstance(record, dict) else {"damaged": True}
        if record is not None else None, raw=raw)


@dataclass(frozen=True)
class Plan:
    """What setup installs, in order: pip, then `requirements`, then `no_deps` without their dependencies."""

    pins: Pins
    runtimes: tuple[str, ...]  # the profile's runtimes installed here
    requirements: tuple[str, ...]
    no_deps: tuple[str, ...]
    env: dict[str, str]
    notes: tuple[str, ...]
    wheel: Path | None = None

    @property
    def all_requirements(self) -> tuple[str, ...]:
        return (*self.requirements, *self.no_deps)


def venv_python(profile: DeviceProfile) -> str:
    return f"{profile.workdir.rstrip('/')}/{VENV}/bin/python"


def make_plan(profile: DeviceProfile, facts: BoardFacts, board: str, wheel: Path | None = None) -> Plan:
    """The plan for this board, or one line saying why there is none and what fixes it. `board` names it."""
    if not facts.python_found or facts.python is None:
        raise UserError(f"{board} has no {profile.python} (not found on its PATH); fix: install it (sudo apt install "
                        "python3 python3-venv) or set python in the device profile to the interpreter's full path")
    bits = 32 if 32 in (facts.long_bit, facts.pointer_bits, facts.elf_bits) else 64
    problem = userland(facts.machine, bits // 8, executable="")["problem"]
    if problem:
        raise UserError(problem)
    pins = PINS.get(facts.python[:2])
    if pins is None:
        known = ", ".join(f"{major}.{minor}" for major, minor in PINS)
        age = "too old" if facts.python[:2] < min(PINS) else "too new" if facts.python[:2] > max(PINS) else "not one"
        raise UserError(f"{board}'s Python {facts.python_text} is {age} for the runtimes setup installs (it knows "
                        f"Python {known}); fix: flash the board's stock 64-bit OS (Raspberry Pi OS bookworm 64-bit, "
                        "JetPack 4.6), or set python in the device profile to one of those")
    if not facts.venv_works:
        raise UserError(f"{board}'s {profile.python} cannot make a virtual environment (no ensurepip/venv module); "
                        f"fix: sudo apt install python3-venv (or python{facts.python[0]}.{facts.python[1]}-venv), "
                        "then run setup again")
    if facts.free_kib is not None and facts.free_kib < pins.free_mb * 1024:
        raise UserError(f"{board} has {facts.free_kib // 1024} MB free under {profile.workdir}, below the "
                        f"{pins.free_mb} MB setup needs; fix: free space there or set workdir in the device "
                        "profile to a disk with room")
    wanted = [r for r in profile.runtimes if r in pins.runtimes]
    if not wanted:
        raise UserError(f"none of {profile.name}'s runtimes ({', '.join(profile.runtimes)}) installs on Python "
                        f"{facts.python_text} ({'; '.join(pins.missing.values())}); fix: set runtimes in the device "
                        f"profile to ones that do ({', '.join(pins.runtimes)})")
    requirements = list(dict.fromkeys(r for runtime in wanted for r in pins.runtimes[runtime]))
    no_deps = [r for r in requirements if r in pins.no_deps]
    notes = [f"{r}: not installed ({pins.missing[r]})" for r in profile.runtimes if r in pins.missing]
    if wheel is not None:
        if "onnxruntime" not in wanted:
            raise UserError(f"--wheel installs ONNX Runtime, which {profile.name} does not use; drop --wheel")
        check_wheel(wheel, facts, board)
        ort = [r for r in requirements if normalize(r.split("=")[0].split("<")[0]) == "onnxruntime"]
        requirements = [r for r in requirements if r not in ort]
        no_deps = [r for r in no_deps if r not in ort] + [f"{WHEELS}/{wheel.name}"]
    else:
        expected = profile.expected_engines.get("onnxruntime", ())
        gpu = [e for e in expected if e != "CPUExecutionProvider"]
        if "onnxruntime" in wanted and gpu and "CPUExecutionProvider" not in expected:
            version = next(r.split("==")[1] for r in requirements if r.startswith("onnxruntime=="))
            notes.append(ORT_GPU_NOTE.format(version=version, profile=profile.name, engines=" or ".join(gpu)))
    requirements = [r for r in requirements if r not in no_deps]
    return Plan(pins=pins, runtimes=tuple(wanted), requirements=tuple(requirements), no_deps=tuple(no_deps),
                env=dict(pins.env), notes=tuple(notes), wheel=wheel)


# -------------------------------------------------------------- wheel tags

WHEEL_NAME = re.compile(r"^(?P<name>[^-]+)-(?P<version>[^-]+)(-\d[^-]*)?-(?P<py>[^-]+)-(?P<abi>[^-]+)-(?P<plat>[^-]+)"
                        r"\.whl$")


def interpreter_tags(python: tuple[int, ...]) -> tuple[list[str], list[str]]:
    """(python tags, abi tags) a CPython `python` installs: cp36 + cp36m for 3.6, cp311 + abi3 for 3.11, ..."""
    major, minor = python[0], python[1]
    cp = f"cp{major}{minor}"
    return [cp, f"py{major}{minor}", f"py{major}"], [cp + ("m" if (major, minor) < (3, 8) else ""), "abi3", "none"]


def platform_tags(machine: str, glibc: tuple[int, int] | None) -> list[str]:
    """The wheel platforms the board takes, newest first: manylinux_2_N down to 2_17 (manylinux2014), the legacy
    aliases, then linux_<arch> (a wheel built on such a board, as NVIDIA's Jetson wheels are)."""
    newest = glibc[1] if glibc and glibc[0] == 2 else 17
    tags = [f"manylinux_2_{minor}_{machine}" for minor in range(newest, 16, -1)]
    tags.append(f"manylinux2014_{machine}")
    if machine in ("x86_64", "i686"):
        tags += [f"manylinux_2_12_{machine}", f"manylinux2010_{machine}", f"manylinux_2_5_{machine}",
                 f"manylinux1_{machine}"]
    return [*tags, f"linux_{machine}"]


def check_wheel(wheel: Path, facts: BoardFacts, board: str) -> None:
    """Refuse a --wheel that is not an ONNX Runtime wheel or whose tags this board's Python cannot install."""
    found = WHEEL_NAME.match(wheel.name)
    if not found:
        raise UserError(f"--wheel {wheel} is not a wheel file name (name-version-python-abi-platform.whl); fix: pass "
                        "the .whl file as downloaded")
    if normalize(found["name"]) not in ("onnxruntime", "onnxruntime-gpu"):
        raise UserError(f"--wheel {wheel.name} is not ONNX Runtime (onnxruntime or onnxruntime_gpu); fix: pass an "
                        "ONNX Runtime wheel")
    pythons, abis = interpreter_tags(facts.python or (0, 0))
    platforms = [*platform_tags(facts.machine, facts.glibc), "any"]
    fits = (set(found["py"].split(".")) & set(pythons) and set(found["abi"].split(".")) & set(abis)
            and set(found["plat"].split(".")) & set(platforms))
    if not fits:
        raise UserError(f"--wheel {wheel.name} is built for {found['py']}-{found['abi']}-{found['plat']}, but "
                        f"{board} runs CPython {facts.python_text} on {facts.machine} (it takes {pythons[0]}-{abis[0]} "
                        f"and linux_{facts.machine}/manylinux); fix: pass the wheel built for {pythons[0]} "
                        f"{facts.machine}")
