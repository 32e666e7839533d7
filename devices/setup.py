"""`tsprune-edge devices setup`: take a board from its stock OS to ready, once, through the bench's transport.

Facts first (one round trip), then the plan (devices/setup_plan.py) or one line refusing it, then: a virtual
environment under the profile's workdir, pip upgraded inside it, the pinned runtimes installed (from the board's
index, or `--offline` from wheels this machine downloads for the board's platform and copies over, sha256-checked),
the runtimes imported once under the agent's environment, and last the record `<workdir>/setup.json` written
atomically. The record is removed before anything changes and a venv made by this run is removed if it fails, so a
half-done setup never looks ready. A board whose record and installed versions already match is left untouched.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from tsprune_edge.devices.profiles import DeviceProfile, load_profile
from tsprune_edge.devices.setup_plan import (
    RECORD,
    VENV,
    WHEELS,
    BoardFacts,
    Plan,
    facts_argv,
    interpreter_tags,
    make_plan,
    normalize,
    parse_facts,
    platform_tags,
    venv_python,
)
from tsprune_edge.devices.setup_record import SETUP_FORMAT
from tsprune_edge.devices.transport import Transport
from tsprune_edge.errors import BoardError, UserError
from tsprune_edge.formats import stamped

FACTS_TIMEOUT = 120.0
INSTALL_TIMEOUT = 3600.0  # pip building nothing, but a Pi on a slow SD card and network takes minutes
HOST_CACHE = Path.home() / ".cache" / "tsprune-edge" / "wheels"
# Imports each runtime the way the agent does: the module that must load under the agent's environment.
ORT_DISTRIBUTIONS = ("onnxruntime", "onnxruntime-gpu")  # PyPI's and NVIDIA's builds both install `onnxruntime`
IMPORTS = {"onnxruntime": "onnxruntime", "ai_edge_litert": "ai_edge_litert.interpreter",
           "tflite_runtime": "tflite_runtime.interpreter"}
_SHA256 = ("import hashlib, sys\n"
           "for p in sys.argv[1:]:\n"
           "    h = hashlib.sha256()\n"
           "    with open(p, 'rb') as f:\n"
           "        for b in iter(lambda: f.read(1 << 20), b''):\n"
           "            h.update(b)\n"
           "    print(h.hexdigest() + ' ' + p)\n")


@dataclass(frozen=True)
class SetupRequest:
    device: str
    wheel: Path | None = None
    offline: bool = False


def host_cache() -> Path:
    return Path(os.environ.get("TSPRUNE_EDGE_WHEEL_CACHE", HOST_CACHE))


def setup(request: SetupRequest, transport: Transport, console: Console | None = None) -> dict:
    """Set the board up (or find it set up); returns the record now on the board."""
    console = console or Console(stderr=True, soft_wrap=True)
    profile = load_profile(request.device)
    wheel = _local_wheel(request.wheel)
    board = f"{profile.name} ({transport.name})"
    done = transport.run(facts_argv(profile), timeout=FACTS_TIMEOUT)
    facts = parse_facts(done.stdout.decode("utf-8", "replace"))
    plan = make_plan(profile, facts, board, wheel)
    wheel_sha = _sha256(wheel) if wheel else None
    if _unchanged(facts, plan, profile, wheel_sha):
        versions = ", ".join(f"{r} {facts.record['runtimes'][r]}" for r in plan.runtimes)
        print(f"already set up: {profile.name} runs {venv_python(profile)} ({versions}); nothing changed")
        return facts.record
    _say(console, f"setting up {board}: {facts.os_name or facts.machine}, Python {facts.python_text}, "
                  f"pip {'.'.join(map(str, facts.pip)) if facts.pip else 'none'} -> a venv at "
                  f"{profile.workdir.rstrip('/')}/{VENV}")
    files = _download(plan, facts, console) if request.offline else []
    if wheel:
        files.append(wheel)
    return _install(transport, profile, facts, plan, files, request, wheel_sha, console)


def _say(console: Console, text: str) -> None:
    """A progress line on stderr, as written: requirement specs and paths are not rich markup."""
    console.print(text, markup=False, highlight=False)


def _local_wheel(wheel: Path | None) -> Path | None:
    if wheel is None:
        return None
    if not wheel.is_file():
        raise UserError(f"--wheel {wheel} is not a file; fix: pass the path of the downloaded .whl")
    return wheel


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _unchanged(facts: BoardFacts, plan: Plan, profile: DeviceProfile, wheel_sha: str | None) -> bool:
    """The record on the board is for this plan and every package it names is installed at its version."""
    record = facts.record
    try:
        if not record or record.get("format") != SETUP_FORMAT or record.get("python") != venv_python(profile):
            return False
        if (record.get("requirements") != list(plan.all_requirements) or record.get("env") != plan.env
                or (record.get("wheel") or {}).get("sha256") != wheel_sha
                or any(r not in (record.get("runtimes") or {}) for r in plan.runtimes)):
            return False
        packages = record.get("packages") or {}
        return bool(packages) and all(facts.installed.get(name) == version for name, version in packages.items())
    except (AttributeError, TypeError):  # a record edited by hand into other types: set the board up again
        return False


def _download(plan: Plan, facts: BoardFacts, console: Console) -> list[Path]:
    """This machine downloads the plan's wheels for the board's platform and Python into its cache (kept between
    runs) and returns exactly the files this plan needs."""
    pythons, abis = interpreter_tags(facts.python)
    platforms = platform_tags(facts.machine, facts.glibc)
    glibc = f"glibc{facts.glibc[0]}.{facts.glibc[1]}" if facts.glibc else "glibc"
    cache = host_cache() / f"linux_{facts.machine}-{glibc}-{pythons[0]}"
    cache.mkdir(parents=True, exist_ok=True)
    base = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "--only-binary=:all:",
            "--python-version", f"{facts.python[0]}.{facts.python[1]}", "--implementation", "cp",
            *(a for abi in abis for a in ("--abi", abi)), *(a for p in platforms for a in ("--platform", p)),
            "--find-links", str(cache)]
    with tempfile.TemporaryDirectory(prefix="tsp-wheels-") as scratch:
        _say(console, f"downloading wheels for {pythons[0]} on {platforms[-1]} into {cache}")
        groups = [([plan.pins.pip, *plan.requirements], []),
                  ([r for r in plan.no_deps if not r.startswith(f"{WHEELS}/")], ["--no-deps"])]
        for requirements, extra in groups:
            if not requirements:
                continue
            argv = [*base, *extra, "-d", scratch, *requirements]
            try:
                done = subprocess.run(argv, capture_output=True, text=True, timeout=INSTALL_TIMEOUT)
            except FileNotFoundError:
                raise UserError(f"this machine cannot run {sys.executable} for pip download; fix: reinstall "
                                "tsprune-edge's environment") from None
            if done.returncode != 0:
                raise UserError(f"pip could not download {' '.join(requirements)} for {pythons[0]} on "
                                f"linux_{facts.machine}: {_last_line(done.stderr or done.stdout)}; fix: check this "
                                "machine's internet, or run setup without --offline")
        names = sorted(p.name for p in Path(scratch).glob("*.whl"))
        for name in names:
            if not (cache / name).exists():
                shutil.copy2(Path(scratch) / name, cache / f".{name}.part")
                os.replace(cache / f".{name}.part", cache / name)
    return [cache / name for name in names]


def _install(transport: Transport, profile: DeviceProfile, facts: BoardFacts, plan: Plan, files: list[Path],
             request: SetupRequest, wheel_sha: str | None, console: Console) -> dict:
    workdir = profile.workdir.rstrip("/")
    python = venv_python(profile)
    record_path, wheels = f"{workdir}/{RECORD}", f"{workdir}/{WHEELS}"
    _board(transport, ["mkdir", "-p", "--", workdir], "create the workdir")
    _board(transport, ["rm", "-f", "--", record_path], "remove the old record")  # not ready until written again
    made = not facts.venv_exists
    try:
        if made:
            _say(console, f"making the venv: {profile.python} -m venv {workdir}/{VENV}")
            _board(transport, [profile.python, "-m", "venv", f"{workdir}/{VENV}"], "make the venv")
        index: list[str] = []
        if files:
            _copy_verified(transport, python, files, wheels)
        if request.offline:
            index = ["--no-index", "--find-links", wheels]
        pip = [python, "-m", "pip", "install", "--disable-pip-version-check", *index]
        _say(console, f"upgrading pip in the venv: {plan.pins.pip}")
        _board(transport, [*pip, "--upgrade", plan.pins.pip], "upgrade pip", INSTALL_TIMEOUT)
        # onnxruntime and onnxruntime_gpu are one module: a wheel file (or PyPI's build after one) replaces, never
        # joins, the installed one; pip would also keep an install of the same version as the file
        switch = "onnxruntime" in plan.runtimes and (plan.wheel is not None or "onnxruntime-gpu" in facts.installed)
        stale = [n for n in ORT_DISTRIBUTIONS if n in facts.installed] if switch else []
        if stale:
            _say(console, f"removing {' '.join(stale)} from the venv before installing ONNX Runtime again")
            _board(transport, [python, "-m", "pip", "uninstall", "--disable-pip-version-check", "-y", *stale],
                   "uninstall the old ONNX Runtime", INSTALL_TIMEOUT)
        if plan.requirements:
            _say(console, f"installing {' '.join(plan.requirements)}")
            _board(transport, [*pip, *plan.requirements], "install the runtimes", INSTALL_TIMEOUT)
        if plan.no_deps:
            targets = [f"{workdir}/{r}" if r.startswith(f"{WHEELS}/") else r for r in plan.no_deps]
            _say(console, f"installing without declared dependencies: {' '.join(targets)}")
            _board(transport, [*pip, "--no-deps", *targets], "install the runtimes", INSTALL_TIMEOUT)
        env = ["env", *(f"{k}={v}" for k, v in plan.env.items())] if plan.env else []
        imports = "; ".join(f"import {IMPORTS[r]}" for r in plan.runtimes)
        _board(transport, [*env, python, "-c", imports], f"import {', '.join(plan.runtimes)} in the venv")
        listed = _board(transport, [python, "-m", "pip", "list", "--format=json", "--disable-pip-version-check"],
                        "list the venv's packages")
        packages = {normalize(p["name"]): p["version"] for p in json.loads(listed)}
        record = stamped("setup", {
            "device": profile.name, "python": python, "base_python": profile.python,
            "python_version": facts.python_text, "machine": facts.machine, "os": facts.os_name,
            "runtimes": {r: packages.get(normalize(_distribution(r, plan))) for r in plan.runtimes},
            "requirements": list(plan.all_requirements), "env": plan.env, "packages": packages,
            "how": "offline" if request.offline else "online",
            "wheel": {"name": request.wheel.name, "sha256": wheel_sha} if request.wheel else None,
            "notes": list(plan.notes),
            "when": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")})
        _write_record(transport, record_path, record)
    except BaseException:
        if made:  # only the venv this run made: one the user or an earlier setup made is kept
            transport.run(["rm", "-rf", "--", f"{workdir}/{VENV}"], timeout=FACTS_TIMEOUT)
        raise
    finally:
        if files:
            transport.run(["rm", "-rf", "--", wheels], timeout=FACTS_TIMEOUT)
    for note in plan.notes:
        print(f"note: {note}")
    versions = ", ".join(f"{r} {record['runtimes'][r]}" for r in plan.runtimes)
    print(f"set up: {profile.name} runs {python} ({versions}"
          + (f"; env {' '.join(f'{k}={v}' for k, v in plan.env.items())}" if plan.env else "")
          + f"); recorded in {record_path}")
    return record


def _distribution(runtime: str, plan: Plan) -> str:
    """The installed distribution that provides `runtime` (onnxruntime_gpu from a --wheel)."""
    if runtime == "onnxruntime" and plan.wheel is not None:
        return plan.wheel.name.split("-")[0]
    return {"ai_edge_litert": "ai-edge-litert", "tflite_runtime": "tflite-runtime"}.get(runtime, runtime)


def _copy_verified(transport: Transport, python: str, files: list[Path], remote: str) -> None:
    """Copy the wheels to the board and compare each one's sha256 there with this machine's."""
    transport.put(files, remote, INSTALL_TIMEOUT)
    expected = {f"{remote}/{f.name}": _sha256(f) for f in files}
    done = transport.run([python, "-c", _SHA256, *expected], timeout=FACTS_TIMEOUT)
    seen = dict(reversed(line.split(" ", 1)) for line in done.stdout.decode().splitlines() if " " in line)
    bad = [Path(p).name for p, digest in expected.items() if seen.get(p) != digest]
    if done.returncode != 0 or bad:
        raise BoardError(f"the copy of {', '.join(bad) or 'the wheels'} on the board does not match its sha256 here; "
                         "run setup again (a disk or network fault)")


def _write_record(transport: Transport, path: str, record: dict) -> None:
    """Written beside its place and renamed over it: the record is whole or absent."""
    text = (json.dumps(record, indent=2) + "\n").encode()
    partial = f"{path.rsplit('/', 1)[0]}/.{RECORD}.part"
    done = transport.run(["sh", "-c", 'cat > "$1" && mv -f -- "$1" "$2"', "sh", partial, path], timeout=FACTS_TIMEOUT,
                         input=text)
    if done.returncode != 0:
        transport.run(["rm", "-f", "--", partial], timeout=FACTS_TIMEOUT)
        raise BoardError(f"could not write {path} on the board: {_last_line(done.stderr)}")


def _board(transport: Transport, argv: list[str], what: str, timeout: float = FACTS_TIMEOUT) -> str:
    done = transport.run(argv, timeout=timeout)
    if done.returncode != 0:
        reason = _last_line(done.stderr) or _last_line(done.stdout) or f"exit {done.returncode}"
        raise BoardError(f"setup could not {what} on the board: {reason}; fix: {_fix(reason)}")
    return done.stdout.decode("utf-8", "replace")


def _fix(reason: str) -> str:
    if "CERTIFICATE_VERIFY_FAILED" in reason:  # pip then also says "No matching distribution": this comes first
        return ("the board's pip does not trust the network's TLS certificate (a proxy that inspects TLS?): name the "
                "proxy's CA bundle in the board's ~/.config/pip/pip.conf ([global] cert = FILE), or run setup with "
                "--offline")
    if any(t in reason for t in ("No matching distribution", "Could not find a version", "NewConnection",
                                 "Temporary failure in name resolution", "Network is unreachable")):
        return "check the board's internet, or run setup with --offline (this machine downloads the wheels)"
    if "No space left" in reason:
        return "free space under the profile's workdir"
    return "run the same setup again; the line above is pip's or the board's own"


def _last_line(text: str | bytes | None) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""

