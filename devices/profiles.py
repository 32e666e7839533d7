"""Device profiles: what a board is, how to reach its Python, and which runtimes to try there.

Built in: `rpi4`, `jetson-nano`, `desktop`. A user adds or overrides one with a TOML file in the profile directory
(`$TSPRUNE_EDGE_DEVICES_DIR`, else `~/.config/tsprune-edge/devices`), one file per profile named `<name>.toml`,
whose keys are the fields of `DeviceProfile`; omitted keys take the built-in profile of the same name's value (or
the defaults below for a new name).
"""

from __future__ import annotations

import dataclasses
import os
import platform
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

from tsprune_edge.errors import UserError
from tsprune_edge.prune.dimensions import DEFAULT_ROUND_TO

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

RUNTIMES = ("onnxruntime", "tflite_runtime", "ai_edge_litert")
# The runtime modules that run each artifact format (the board agent keeps its own copy: it runs alone there).
FORMAT_RUNTIMES = {"onnx": ("onnxruntime",), "tflite": ("tflite_runtime", "ai_edge_litert")}
TENSORRT_PRECISIONS = ("fp32", "fp16")


@dataclass(frozen=True)
class DeviceProfile:
    name: str
    description: str
    arch: str  # what `uname -m` says on the board: aarch64, x86_64
    cores: int
    memory_mb: int
    python: str = "python3"  # the board's interpreter (over SSH the login PATH may differ: give a full path)
    # Per-runtime interpreters where a board keeps runtimes apart (tflite_runtime needs numpy<2), e.g.
    # {"tflite_runtime": "/home/pi/tfl/bin/python"}; runtimes not named use `python`.
    interpreters: dict[str, str] = field(default_factory=dict)
    # Variables every agent process on the board gets, e.g. {OPENBLAS_CORETYPE = "ARMV8"} (numpy 1.19.5 on a Nano);
    # `devices setup` records its own in the board's setup.json.
    environment: dict[str, str] = field(default_factory=dict)
    host: str | None = None  # default SSH destination (user@host or a ~/.ssh/config alias)
    workdir: str = "/tmp/tsprune-edge"  # per-run folders are made under it
    runtimes: tuple[str, ...] = RUNTIMES  # tried in this order; the first importable one per format is used
    threads: tuple[int, ...] = (1,)  # default thread counts to measure
    # The zones whose heat counts (max_temperature_c, --cooldown): a zone's type as in /sys/class/thermal/*/type, or
    # its temp file's path; empty: every zone but those that read a constant (the Nano's PMIC-Die says 100 C).
    thermal_zones: tuple[str, ...] = ()
    round_to: int = DEFAULT_ROUND_TO  # channel alignment that keeps pruned widths fast on its SIMD (--round-to)
    onnx_providers: tuple[str, ...] = ("CPUExecutionProvider",)  # tried in order where present
    # The engine each runtime must run on for its timings to be judged: ONNX Runtime's providers, any one of which
    # ran the graph. A measurement on another (a CPU-only wheel, a provider that fell back) is NOT JUDGED; to
    # measure the CPU on purpose, name CPUExecutionProvider here in the board's TOML.
    expected_engines: dict[str, tuple[str, ...]] = field(
        default_factory=lambda: {"onnxruntime": ("CPUExecutionProvider",)})
    # TensorRT (ORT's provider and trtexec): the builder's workspace cap; the Nano's 4 GB is shared by CPU and GPU,
    # and ORT's 1 GB default gets engine builds killed there.
    trt_workspace_mb: int = 256
    # The newest ONNX its runtimes all read: `export --device NAME` writes this opset and IR version and `bench`
    # refuses a newer bundle before connecting. 20/10 is torch's own export; ONNX Runtime 1.10 (the newest for the
    # Nano's Python 3.6) reads opset <= 15 / IR <= 8 and TensorRT 8.0/8.2 opset <= 13.
    onnx_opset: int = 20
    onnx_ir: int = 10
    onnx_sparse: bool = True  # its ONNX runtimes load graph.sparse_initializer (pruned weights stored sparse)
    # Also measure each ONNX artifact with TensorRT's trtexec where the board has it, at these precisions (fp32,
    # fp16); empty: never.
    tensorrt_precisions: tuple[str, ...] = ()
    local: bool = False  # measured on this machine, no SSH
    emulated: bool = False  # a qemu-user board: correct outputs, meaningless timings

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def interpreter(self, runtime: str) -> str:
        return self.interpreters.get(runtime, self.python)

    def command(self, python: str) -> list[str]:
        """The argv that starts `python` on the board with the profile's environment (workers inherit it)."""
        return ["env", *(f"{k}={v}" for k, v in self.environment.items()), python] if self.environment else [python]

    def readable_formats(self) -> tuple[str, ...]:
        """The artifact formats this board has a runtime for."""
        return tuple(f for f, runtimes in FORMAT_RUNTIMES.items() if set(runtimes) & set(self.runtimes))

    def destination(self, host: str | None) -> str | None:
        """The SSH destination to reach this board (None: it is this machine), checked before any work: a remote
        board needs a host, this machine takes none."""
        if self.local:
            if host:
                raise UserError(f"--device {self.name} is measured on this machine; drop --host or choose a board")
            return None
        if not (host or self.host):
            raise UserError(f"--device {self.name} is a remote board: pass --host user@address (or set host in its "
                            "profile)")
        return host or self.host

    def engine_cache(self) -> str:
        """Where the board keeps TensorRT engines between benches: beside the run folders, never inside one (a run
        folder is deleted after its bench)."""
        return f"{self.workdir.rstrip('/')}/engines"

    def export_fields(self) -> dict:
        """The ExportRequest fields this board decides: the ONNX level and encoding its runtimes load."""
        return {"onnx_opset": self.onnx_opset, "onnx_ir": self.onnx_ir, "onnx_sparse": self.onnx_sparse}


BUILT_IN = {
    "rpi4": DeviceProfile(
        name="rpi4", description="Raspberry Pi 4 Model B: 4x Cortex-A72 1.5 GHz, Raspberry Pi OS bookworm (64-bit)",
        arch="aarch64", cores=4, memory_mb=4096, threads=(1, 4), round_to=4,  # NEON: 4 float32 lanes
        thermal_zones=("cpu-thermal",),
    ),
    "jetson-nano": DeviceProfile(
        name="jetson-nano", description="Jetson Nano: 4x Cortex-A57 1.43 GHz + 128-core Maxwell GPU, JetPack 4.x, "
        "system Python 3.6 (no TFLite wheel: onnxruntime from NVIDIA's Jetson packages)",
        arch="aarch64", cores=4, memory_mb=4096, python="python3", threads=(1, 4), round_to=4,
        runtimes=("onnxruntime",),
        thermal_zones=("CPU-therm", "GPU-therm"),  # not PMIC-Die (a constant 100 C) nor the fan's estimate
        onnx_providers=("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"),
        expected_engines={"onnxruntime": ("TensorrtExecutionProvider", "CUDAExecutionProvider")},
        onnx_opset=13, onnx_ir=7,  # what ONNX Runtime 1.10 and TensorRT 8.0/8.2 both take
        onnx_sparse=False,  # TensorRT's ONNX parser is not known to read sparse initializers: dense weights
        tensorrt_precisions=("fp32", "fp16"),  # the Maxwell GPU runs fp16; INT8 it does not
    ),
    "desktop": DeviceProfile(
        name="desktop", description="this machine, measured locally", arch=platform.machine(),
        cores=os.cpu_count() or 1, memory_mb=0, python=sys.executable, threads=(1,), local=True,
    ),
}


def profile_dir() -> Path:
    return Path(os.environ.get("TSPRUNE_EDGE_DEVICES_DIR", Path.home() / ".config" / "tsprune-edge" / "devices"))


def resolve_round_to(device: str | None, round_to: int | None) -> tuple[int, str]:
    """(round_to, source) for structured pruning: `round_to` given ("option"), else the board profile's ("profile
    NAME"), else the default ("default"). An unknown device is refused here, before any work."""
    profile = None if device is None else load_profile(device)
    if round_to is not None:
        return round_to, "option"
    if profile is not None:
        return profile.round_to, f"profile {profile.name}"
    return DEFAULT_ROUND_TO, "default"


def available_profiles() -> list[str]:
    user = sorted(p.stem for p in profile_dir().glob("*.toml")) if profile_dir().is_dir() else []
    return list(dict.fromkeys([*BUILT_IN, *user]))


def load_profile(name: str) -> DeviceProfile:
    """The named profile: a user TOML file over the built-in one of that name, or a built-in profile alone."""
    path = profile_dir() / f"{name}.toml"
    if not path.is_file():
        if name not in BUILT_IN:
            raise UserError(f"unknown device {name!r}; choose one of {', '.join(available_profiles())} or write "
                            f"{path}")
        return BUILT_IN[name]
    try:
        values = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise UserError(f"{path}: not a readable TOML profile ({str(exc).splitlines()[0]})") from None
    return _from_toml(name, values, path)


# integers where 0 means nothing sensible; others may be 0 (memory_mb: unknown)
_POSITIVE = ("cores", "round_to", "onnx_opset", "onnx_ir", "trt_workspace_mb")


def _from_toml(name: str, values: dict, path: Path) -> DeviceProfile:
    fields = {f.name: f for f in dataclasses.fields(DeviceProfile)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise UserError(f"{path}: unknown key {unknown[0]!r}; profile keys are {', '.join(fields)}")
    base = BUILT_IN.get(name)
    if base is None:
        missing = [k for k in ("description", "arch", "cores", "memory_mb") if k not in values]
        if missing:
            raise UserError(f"{path}: a new profile needs {', '.join(missing)}")
        base = DeviceProfile(name=name, description="", arch="", cores=1, memory_mb=0)
    merged = {**base.to_dict(), **values, "name": name}
    hints = typing.get_type_hints(DeviceProfile)
    for key, value in values.items():
        merged[key] = _typed(key, value, hints[key], path)
    if "interpreters" in values and any(k not in RUNTIMES for k in merged["interpreters"]):
        raise UserError(f"{path}: interpreters maps runtimes ({', '.join(RUNTIMES)}) to interpreter paths")
    bad_precisions = [p for p in merged["tensorrt_precisions"] if p not in TENSORRT_PRECISIONS]
    if bad_precisions:
        raise UserError(f"{path}: unknown TensorRT precision {bad_precisions[0]!r}; tensorrt_precisions takes "
                        f"{', '.join(TENSORRT_PRECISIONS)}")
    engines = merged["expected_engines"]
    if any(k not in RUNTIMES or not v for k, v in engines.items()):
        raise UserError(f"{path}: expected_engines maps runtimes ({', '.join(RUNTIMES)}) to the engines they must "
                        f"run on, e.g. {{onnxruntime = [\"CPUExecutionProvider\"]}}; got {engines!r}")
    bad = [r for r in merged["runtimes"] if r not in RUNTIMES]
    if bad:
        raise UserError(f"{path}: unknown runtime {bad[0]!r}; runtimes are {', '.join(RUNTIMES)}")
    if any("," in zone or not zone for zone in merged["thermal_zones"]):
        raise UserError(f"{path}: thermal_zones are zone types or temp-file paths, none empty or with a comma")
    if not merged["threads"]:
        raise UserError(f"{path}: threads must be a list of positive integers, got []")
    return DeviceProfile(**merged)


def _typed(key: str, value: object, hint: object, path: Path) -> object:
    """Check one TOML value against the field's declared type, so that a field added later is checked too."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):  # X | None: TOML has no null, so the value is an X
        return _typed(key, value, next(a for a in args if a is not type(None)), path)
    if hint is bool:
        if not isinstance(value, bool):
            raise UserError(f"{path}: {key} must be true or false, got {value!r}")
    elif hint is int:
        if not isinstance(value, int) or isinstance(value, bool) or value < (1 if key in _POSITIVE else 0):
            least = "a positive" if key in _POSITIVE else "a non-negative"
            raise UserError(f"{path}: {key} must be {least} integer, got {value!r}")
    elif hint is float:
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value != value:
            raise UserError(f"{path}: {key} must be a number, got {value!r}")
    elif hint is str:
        if not isinstance(value, str) or any(c in value for c in "\0\n\r"):
            raise UserError(f"{path}: {key} must be a one-line string, got {value!r}")
    elif origin is tuple:
        if not isinstance(value, list):
            raise UserError(f"{path}: {key} must be a list, got {value!r}")
        item = args[0]
        if item is int:
            if any(not isinstance(v, int) or isinstance(v, bool) or v < 1 for v in value):
                raise UserError(f"{path}: {key} must be a list of positive integers, got {value!r}")
        else:
            return tuple(_typed(key, v, item, path) for v in value)
        return tuple(value)
    elif origin is dict:
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise UserError(f"{path}: {key} must be a table, got {value!r}")
        if args[1] is str:
            if not all(isinstance(v, str) for v in value.values()):
                raise UserError(f"{path}: {key} must be a table of strings, got {value!r}")
        else:
            return {k: _typed(key, v, args[1], path) for k, v in value.items()}
    return value
