"""The bench stage: export bundles -> a board (local or over SSH) -> measured results JSON on this machine.

Steps, each with its own timeout: copy the agent, preflight every interpreter the plan needs, copy the bundles,
verify their sha256 on the board, run the agent's interleaved plan, fetch the results. Results already measured on
the board are fetched even when a later step fails, and the board's run folder is then kept so that `--resume`
finishes only what is missing.
"""

from __future__ import annotations

import hashlib
import json
import re
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from tsprune_edge.devices import runs
from tsprune_edge.devices.agent import ITEM_ID
from tsprune_edge.devices.profiles import FORMAT_RUNTIMES, DeviceProfile, load_profile
from tsprune_edge.devices.progress import BenchProgress
from tsprune_edge.devices.readings import throttled
from tsprune_edge.devices.runs import DEFAULT_MIN_TIME, DEFAULT_ROUNDS
from tsprune_edge.devices.setup_record import board_profile
from tsprune_edge.devices.transport import LocalTransport, SshTransport, Transport
from tsprune_edge.errors import BoardError, ToolError, UserError
from tsprune_edge.export.control import refuse_control, with_control
from tsprune_edge.export.manifest import MANIFEST, load_bench_manifest, torch_window_errors
from tsprune_edge.variants import CONTROL

AGENT = Path(__file__).with_name("agent.py")
RoundRule = Callable[[Path], list[str]]  # run folder -> the item ids another round could still decide
RUNTIME_CHOICES = {"onnxruntime": "onnx", "tflite": "tflite"}
TENSORRT = "tensorrt"  # measured by the agent with trtexec, beside onnxruntime, where the profile asks
STEP_TIMEOUT = 300.0
LOCK_POLL_S = 2.0


@dataclass(frozen=True)
class BenchRequest:
    device: str
    host: str | None = None
    artifacts: Path = Path("export")
    runtimes: tuple[str, ...] = ("onnxruntime", "tflite")  # onnxruntime and/or tflite (the board's TFLite runtime)
    threads: tuple[int, ...] | None = None  # default: the profile's
    rounds: int = DEFAULT_ROUNDS
    max_rounds: int | None = None  # add rounds up to this while a variant is undecided (None: exactly `rounds`)
    min_time: float = DEFAULT_MIN_TIME
    min_iters: int = 100
    cooldown_s: float = 0.0  # wait up to this long before each measurement for the start temperature (+2 C)
    profile: bool = False  # ORT per-op times (first round, separate session): where the time goes
    accuracy: bool = False  # the bundle's test split through each artifact on the board (first round)
    control: bool = False  # add the A/A control: a byte-different copy of dense, judged against it
    results: Path = Path("results")
    resume: bool = False
    keep: bool = False
    accept_new_host_key: bool = False
    ssh_config: Path | None = None
    port: int | None = None  # the board's SSH port, where not 22 (or set in the ssh config)
    identity: Path | None = None  # the private key the board accepts (only that key is offered)

    def validate(self) -> None:
        bad = [r for r in self.runtimes if r not in RUNTIME_CHOICES]
        if bad or not self.runtimes:
            raise UserError(f"unknown runtime {','.join(bad) or '(none)'}; --runtime takes onnxruntime and/or tflite")
        if self.threads is not None and (not self.threads or min(self.threads) < 1):
            raise UserError("--threads takes positive integers, for example 1,4")
        if self.rounds < 1 or self.min_iters < 1 or self.min_time <= 0:
            raise UserError("--rounds and --min-iters must be >= 1 and --min-time > 0")
        if self.max_rounds is not None and self.max_rounds < self.rounds:
            raise UserError(f"--max-rounds ({self.max_rounds}) must be at least --rounds ({self.rounds})")


def bench(request: BenchRequest, console: Console | None = None, more_rounds: RoundRule | None = None) -> dict:
    """Measure every bundle under `request.artifacts` on the device; returns the summary written to bench.json.

    `more_rounds` is the rule for adding rounds: given the run folder, the ids a further round could still decide
    (one round more while it names any, up to `request.max_rounds`); None measures exactly `request.rounds`."""
    console = console or Console(stderr=True)
    request.validate()
    profile = load_profile(request.device)
    with open_transport(profile, request) as transport:  # the host is checked here; nothing connects yet
        taken = runs.claim(request.results, profile.name, resume=True) if request.resume else None
        try:
            bundles = find_bundles(request.artifacts)
            refuse_unreadable(bundles, profile, request)  # before connecting: a bundle the board cannot read
            if request.control:
                refuse_control(bundles)
            run = taken or runs.claim(request.results, profile.name, resume=False)
        except BaseException:
            if taken:
                taken.release()
            raise
        with run:  # this bench's alone until it returns: another one neither shares nor resumes it
            return _measure(run, transport, profile, request, bundles, console, more_rounds)


def _measure(run: runs.RunFolder, transport: Transport, profile: DeviceProfile, request: BenchRequest,
             bundles: dict[str, dict], console: Console, more_rounds: RoundRule | None) -> dict:
    """The run in a folder this bench holds: board folder, preparation, rounds, fetch, summary, clean-up."""
    run_dir = run.path
    remote = remote_folder(profile, run_dir)
    try:
        made = board_folder(transport, remote, run)
        profile = board_profile(transport, profile)  # the venv `devices setup` made, where it did
        if request.control:  # made in the run folder, so that a resumed run measures the same copy
            bundles = with_control(bundles, run_dir)
        if made and not run.fresh:  # the board lost the folder: give it back what was measured, not measure again
            restore_results(transport, run_dir, remote)
        state, preflight, plan = _prepare(transport, profile, request, bundles, run_dir, remote, console)
    except BaseException:  # a fresh run measured nothing yet: leave nothing behind, here or on the board
        if run.fresh:
            remove_board_folder(transport, remote, run.owner)
            run.discard()
        raise
    try:
        agent_summary = run_plan(transport, profile, remote, _run_budget(plan), console)
        while more_rounds and plan["rounds"] < (request.max_rounds or 0):  # one more round while one is open
            still = more_rounds(run_dir) if _fetch(transport, remote, run_dir, console) is not None else []
            if not still:
                break
            plan["rounds"] += 1
            console.print(f"undecided after {plan['rounds'] - 1} rounds: {', '.join(still)}; adding round "
                          f"{plan['rounds']} of at most {request.max_rounds}")
            transport.put([runs.write_plan(run_dir, plan)], remote, STEP_TIMEOUT)
            agent_summary = run_plan(transport, profile, remote, _run_budget(plan), console)
    finally:  # whatever the board measured comes back, also when the connection dropped mid-run
        fetched = _fetch(transport, remote, run_dir, console)
        state.update(status="fetched" if fetched is not None else "unfetched", fetched=fetched)
        runs.write_state(run_dir, state)
    if fetched is None:
        raise BoardError(f"the results stay on {profile.name} in {remote}: they could not be fetched; "
                        "run the same bench with --resume")
    summary = summarize_run(run_dir, profile, transport.name, preflight, plan, agent_summary)
    if more_rounds:
        summary["undecided"] = more_rounds(run_dir)
        if summary["undecided"] and request.max_rounds:
            console.print(f"stopped undecided after {plan['rounds']} rounds (--max-rounds {request.max_rounds}): "
                          f"{', '.join(summary['undecided'])}")
    summary["bundles"] = {name: {**bundle_facts(b["manifest"]),
                                 "torch_window_errors": torch_window_errors(b["path"], b["manifest"])}
                          for name, b in bundles.items()}
    runs.write_bench(run_dir, summary)
    runs.write_state(run_dir, {**state, "status": runs.DONE})
    if not request.keep and not remove_board_folder(transport, remote, run.owner):
        console.print(f"kept {remote} on {profile.name}: the board did not answer, or the folder does not carry "
                      "this run's owner mark")
    return summary


def _prepare(transport: Transport, profile: DeviceProfile, request: BenchRequest, bundles: dict[str, dict],
             run_dir: Path, remote: str, console: Console) -> tuple[dict, dict, dict]:
    """Agent, preflight, plan, bundles copied and verified on the board: everything before the first measurement."""
    state = {"run_id": run_dir.name, "device": profile.name, "transport": transport.name, "remote_dir": remote,
             "status": "started"}
    runs.write_state(run_dir, state)
    console.print(f"bench {run_dir.name}: {len(bundles)} bundles on {profile.name} via {transport.name}")
    transport.put([AGENT], remote, STEP_TIMEOUT)
    preflight = run_preflight(transport, profile, remote, request)
    runs.write_preflight(run_dir, preflight)
    for warning in power_warnings(preflight):
        console.print(f"warning: {warning}")
    for note in board_notes(preflight):
        console.print(f"note: {note}")
    plan = make_plan(bundles, profile, request, preflight)
    plan_file = runs.write_plan(run_dir, plan)
    console.print(f"copying {len(bundles)} bundles, then {len(plan['items'])} measurements x {request.rounds} rounds")
    transport.put([*(b["path"] for b in bundles.values()), plan_file], remote, STEP_TIMEOUT)
    for name in bundles:
        verify_on_board(transport, profile, remote, name)
    return state, preflight, plan


def find_bundles(artifacts: Path) -> dict[str, dict]:
    """Every export bundle (a folder with a manifest) under `artifacts`, dense first."""
    folders = sorted(p.parent for p in Path(artifacts).glob(f"*/{MANIFEST}"))
    if not folders:
        raise UserError(f"no export bundles under {artifacts}; run `tsprune-edge export` first or pass --artifacts")
    for folder in folders:  # the bundle's name is part of every item id the agent checks: refuse it before any copy
        if not ITEM_ID.fullmatch(folder.name):
            raise UserError(f"bundle folder {folder} has a name the board agent refuses: use only letters, digits "
                            f"and . _ - (rename it, e.g. to {re.sub(r'[^A-Za-z0-9._-]', '_', folder.name)})")
    bundles = {f.name: {"path": f, "manifest": load_bench_manifest(f)} for f in folders}
    return dict(sorted(bundles.items(), key=lambda item: (item[0] != "dense", item[0])))


def refuse_unreadable(bundles: dict[str, dict], profile: DeviceProfile, request: BenchRequest) -> None:
    """Before connecting: refuse ONNX files newer than the board's runtimes read (opset, IR), and a bench in which
    no requested format has a runtime on the board; each says which command fixes it."""
    formats = [RUNTIME_CHOICES[choice] for choice in request.runtimes]
    runnable = [f for f in formats if f in profile.readable_formats()]
    if not any(f in b["manifest"]["artifacts"] for f in runnable for b in bundles.values()):
        readable = ", ".join(profile.readable_formats())
        raise UserError(f"{profile.name} has no runtime for the {' or '.join(formats)} artifacts asked for (its "
                        f"runtimes: {', '.join(profile.runtimes)}); export {readable or 'a format it reads'} with "
                        f"`tsprune-edge export --device {profile.name}` and bench with --runtime onnxruntime")
    if "onnx" not in runnable:
        return
    for name, bundle in bundles.items():
        artifact = bundle["manifest"]["artifacts"].get("onnx")
        if artifact is None:
            continue
        opset = artifact["opset"]
        ir = artifact.get("ir_version", 10)  # bundles from before the field was recorded: torch's dynamo, IR 10
        if opset > profile.onnx_opset or ir > profile.onnx_ir:
            raise UserError(f"{name}/model.onnx is opset {opset}, IR {ir}: newer than {profile.name}'s runtimes read "
                            f"(opset {profile.onnx_opset}, IR {profile.onnx_ir}); make bundles it reads with "
                            f"`tsprune-edge export --device {profile.name}` (plus your --method/--sparsity options)")


def open_transport(profile: DeviceProfile, request: BenchRequest) -> Transport:
    host = profile.destination(request.host)
    if host is None:
        return LocalTransport()
    return SshTransport(host, port=request.port, ssh_config=request.ssh_config, identity=request.identity,
                        accept_new_host_key=request.accept_new_host_key)


def remote_folder(profile: DeviceProfile, run_dir: Path) -> str:
    """The run's folder on the board: its name plus a hash of the local results path, so that two benches started
    in the same second from different results folders (two fits, two users) never share, and remove, one folder;
    the same run resumed gets the same folder."""
    digest = hashlib.sha256(str(Path(run_dir).resolve()).encode()).hexdigest()[:8]
    return f"{profile.workdir.rstrip('/')}/{run_dir.name}-{digest}"


# The board folder carries the owner token of the run that made it; it is removed only where the token matches, so
# a bench never removes a folder it did not make. Positional parameters: $1 the work folder, $2 the run's folder, $3
# the token. `set -C`: the mark is created, never written over.
OWNER_MARK = ".tsprune-owner"
_MAKE = f'mkdir -p -- "$1" && mkdir -- "$2" && (set -C && printf "%s\\n" "$3" > "$2/{OWNER_MARK}")'
_TAKE_UP = (f'if [ -d "$2" ]; then if [ -e "$2/{OWNER_MARK}" ]; then [ "$(cat -- "$2/{OWNER_MARK}")" = "$3" ] || '
            f'exit 3; else printf "%s\\n" "$3" > "$2/{OWNER_MARK}"; fi; echo kept; else {_MAKE} && echo made; fi')
_REMOVE = f'[ "$(cat -- "$2/{OWNER_MARK}" 2>/dev/null)" = "$3" ] && rm -rf -- "$2"'


def _board_shell(transport: Transport, script: str, remote: str, owner: str):
    parent = remote.rsplit("/", 1)[0] or "/"
    return transport.run(["sh", "-c", script, "sh", parent, remote, owner], timeout=STEP_TIMEOUT)


def board_folder(transport: Transport, remote: str, run: runs.RunFolder) -> bool:
    """Make the run's folder on the board (a fresh run: it must not exist yet), or take it up again (resume: it must
    carry this run's owner mark, or none from before marks). True when it was made now."""
    done = _board_shell(transport, _TAKE_UP if not run.fresh else _MAKE, remote, run.owner)
    if done.returncode == 3:
        raise UserError(f"the board's {remote} carries another run's owner mark: it is not this run's; remove it "
                        "there if no bench uses it, or run the bench without --resume")
    if done.returncode != 0:
        raise BoardError(f"the board could not create the run folder {remote}: "
                        f"{_first_line(done.stderr) or f'exit {done.returncode}'}")
    return run.fresh or b"made" in (done.stdout or b"")


def remove_board_folder(transport: Transport, remote: str, owner: str) -> bool:
    """Remove the run's folder on the board if it carries `owner`'s mark; False where it was kept (not ours, or the
    board could not be reached: this runs on failure paths too)."""
    try:
        return _board_shell(transport, _REMOVE, remote, owner).returncode == 0
    except ToolError:
        return False


def restore_results(transport: Transport, run_dir: Path, remote: str) -> None:
    """Copy the measurements fetched earlier back into a board folder made anew, so the agent skips them."""
    measured = [p for p in runs.all_round_paths(run_dir) if "error" not in runs.read_round(p)]
    if measured:
        transport.put(measured, f"{remote}/results", STEP_TIMEOUT)


def run_preflight(transport: Transport, profile: DeviceProfile, remote: str, request: BenchRequest) -> dict:
    """The agent's preflight under every interpreter the requested runtimes use; refuse before copying anything
    big if no interpreter can run a requested format."""
    wanted = [r for choice in request.runtimes for r in FORMAT_RUNTIMES[RUNTIME_CHOICES[choice]]
              if r in profile.runtimes]
    if profile.tensorrt_precisions and "onnxruntime" in request.runtimes:
        wanted.append(TENSORRT)  # the agent looks for trtexec; it measures where found
    by_python: dict[str, list[str]] = {}
    for runtime in wanted:
        by_python.setdefault(profile.interpreter(runtime), []).append(runtime)
    reports = {}
    for python, runtimes in by_python.items():
        done = transport.run([*profile.command(python), f"{remote}/agent.py", "preflight", "--runtime",
                              ",".join(runtimes), "--thermal-zones", ",".join(profile.thermal_zones)],
                             timeout=STEP_TIMEOUT)
        report = _json_line(done.stdout)
        if not report or "runtimes" not in report:
            raise UserError(f"the board's {python} cannot run the agent: {_first_line(done.stderr) or 'no output'} "
                            "(the agent needs Python >= 3.6; set python in the device profile)")
        if (report.get("userland") or {}).get("problem"):
            raise UserError(report["userland"]["problem"])
        reports[python] = report
    return {"interpreters": reports, "machine": next(iter(reports.values()))["machine"] if reports else None}


def usable_runtime(fmt: str, profile: DeviceProfile, preflight: dict) -> tuple[str, str] | None:
    """(runtime, interpreter) that runs `fmt` on the board, in the profile's order of preference."""
    for runtime in profile.runtimes:
        if runtime not in FORMAT_RUNTIMES[fmt]:
            continue
        python = profile.interpreter(runtime)
        found = preflight["interpreters"].get(python, {}).get("runtimes", {}).get(runtime, {})
        if found.get("runs"):
            return runtime, python
    return None


def make_plan(bundles: dict[str, dict], profile: DeviceProfile, request: BenchRequest, preflight: dict) -> dict:
    items, missing = [], []
    for choice in request.runtimes:
        fmt = RUNTIME_CHOICES[choice]
        chosen = usable_runtime(fmt, profile, preflight)
        if chosen is None:
            missing.append(_missing_runtime(fmt, profile, preflight))
            continue
        runtime, python = chosen
        for name, bundle in bundles.items():
            if fmt not in bundle["manifest"]["artifacts"]:
                continue
            probe = bool(bundle["manifest"].get("probe"))
            for threads in request.threads or profile.threads:
                items.append({"id": f"{name}__{fmt}__t{threads}", "bundle": name, "format": fmt, "runtime": runtime,
                              "python": python, "threads": threads, "providers": list(profile.onnx_providers)
                              if fmt == "onnx" else [], "profile": request.profile,
                              "accuracy": request.accuracy and not probe, "probe": probe, **trt_options(profile, fmt)})
    items += tensorrt_items(bundles, profile, request, preflight)
    if missing and not items:
        raise UserError("; ".join(missing))
    cooldown = {"max_seconds": request.cooldown_s, "within_c": 2.0} if request.cooldown_s > 0 else None
    return {"items": items, "rounds": request.rounds, "first_rounds": request.rounds,
            "max_rounds": request.max_rounds or request.rounds, "min_time": request.min_time,
            "min_iters": request.min_iters, "cooldown": cooldown, "skipped": missing,
            "thermal_zones": list(profile.thermal_zones),
            "expected_engines": {k: list(v) for k, v in profile.expected_engines.items()}}


def trt_options(profile: DeviceProfile, fmt: str) -> dict:
    """Where TensorRT (trtexec, or ORT's provider) keeps its engines on the board, and its workspace cap."""
    if fmt != "tensorrt" and not (fmt == "onnx" and "TensorrtExecutionProvider" in profile.onnx_providers):
        return {}
    return {"engine_cache": profile.engine_cache(), "trt_workspace_mb": profile.trt_workspace_mb}


def tensorrt_items(bundles: dict[str, dict], profile: DeviceProfile, request: BenchRequest,
                   preflight: dict) -> list[dict]:
    """One item per ONNX artifact and precision the profile asks for, where the board's trtexec runs; they join
    the same interleaved rounds as the other runtimes."""
    found = preflight["interpreters"].get(profile.python, {}).get("runtimes", {}).get(TENSORRT, {})
    if not (profile.tensorrt_precisions and "onnxruntime" in request.runtimes and found.get("runs")):
        return []
    return [{"id": f"{name}__onnx__trt-{precision}", "bundle": name, "format": "onnx", "runtime": TENSORRT,
             "python": profile.python, "threads": 1, "precision": precision, "providers": [], "profile": False,
             "accuracy": False, **trt_options(profile, "tensorrt")}
            for name, bundle in bundles.items() if "onnx" in bundle["manifest"]["artifacts"]
            for precision in profile.tensorrt_precisions]


def power_warnings(preflight: dict) -> list[str]:
    """A Jetson's power mode and clock warnings from preflight (nvpmodel, jetson_clocks), each with its fix."""
    states = [r.get("jetson_power") for r in preflight["interpreters"].values() if r.get("jetson_power")]
    return list(states[0]["warnings"]) if states else []


def board_notes(preflight: dict) -> list[str]:
    """What the board's sensors cannot tell (thermal zones, vcgencmd, jetson_clocks without root), each once."""
    notes = [n for r in preflight["interpreters"].values() for n in r.get("notes", [])]
    return list(dict.fromkeys(notes))


def _missing_runtime(fmt: str, profile: DeviceProfile, preflight: dict) -> str:
    """One line: why no runtime for `fmt` runs on the board, with the agent's fix hint where it has one."""
    for runtime in (r for r in profile.runtimes if r in FORMAT_RUNTIMES[fmt]):
        found = preflight["interpreters"].get(profile.interpreter(runtime), {}).get("runtimes", {}).get(runtime)
        if found and (found.get("fix") or found.get("error")):
            return (f"{fmt}: {runtime} does not run on {profile.name} ({found.get('error') or 'not importable'}); "
                    f"fix: {found.get('fix') or 'install it'}")
    return f"{fmt}: no runtime for it on {profile.name} (profile runtimes: {', '.join(profile.runtimes)})"


def verify_on_board(transport: Transport, profile: DeviceProfile, remote: str, bundle: str) -> None:
    done = transport.run([*profile.command(profile.python), f"{remote}/agent.py", "verify", "--bundle",
                          f"{remote}/{bundle}"], timeout=STEP_TIMEOUT)
    report = _json_line(done.stdout)
    if done.returncode != 0 or not report.get("ok"):
        bad = [f["file"] for f in report.get("files", []) if not f.get("ok")]
        raise BoardError(f"{bundle}: checksum mismatch on the board for {', '.join(bad) or 'its files'} "
                        f"({report.get('error', 'copy corrupted')}); re-export or re-run the bench")


def run_plan(transport: Transport, profile: DeviceProfile, remote: str, budget: float, console: Console) -> dict:
    """The agent's `run` on the board. If the board is still busy with this run's earlier agent (the connection
    dropped but the agent kept measuring), wait for it: the next `run` then only measures what is missing."""
    argv = [*profile.command(profile.python), f"{remote}/agent.py", "run", "--plan", f"{remote}/plan.json", "--results",
            f"{remote}/results", "--lock-dir", profile.workdir]
    deadline = time.monotonic() + budget
    while True:
        with BenchProgress(console) as progress:  # one line per measurement, as the agent streams them
            done = transport.run(argv, timeout=max(deadline - time.monotonic(), 1.0), on_line=progress)
        summary = _json_line(done.stdout)
        if done.returncode in (0, 1):  # 1: some measurement failed; the summary and result files say which
            return summary
        if done.returncode != 4:
            reason = summary.get("error") or _first_line(done.stderr) or "no output"
            raise BoardError(f"the run on {profile.name} stopped (exit {done.returncode}: {reason}); what it measured "
                            "is kept: run the same bench with --resume to finish")
        if time.monotonic() > deadline:
            raise BoardError(f"{profile.name} stayed locked by another bench ({summary.get('error', 'locked')}); "
                            "wait for it to finish, then --resume")
        console.print(f"the board is busy ({summary.get('error', 'locked')}); waiting")
        time.sleep(LOCK_POLL_S)


def _run_budget(plan: dict) -> float:
    """Generous wall-clock limit for the whole plan: each measurement's minimum time, warm-up and start-up."""
    per_item = 2 * (plan["min_time"] + 15.0 + (plan["cooldown"] or {}).get("max_seconds", 0.0))  # two passes
    return STEP_TIMEOUT + 3 * per_item * len(plan["items"]) * plan["rounds"]


def _fetch(transport: Transport, remote: str, run_dir: Path, console: Console) -> int | None:
    """Bring back whatever the board measured so far: the number of result files, None if the board could not be
    reached. Never raises: it runs on the failure path too."""
    try:
        transport.get(f"{remote}/results", run_dir / runs.RAW, STEP_TIMEOUT)
    except ToolError as exc:
        console.print(f"could not fetch the results: {exc}")
        return None
    return len(runs.all_round_paths(run_dir))


def summarize_run(run_dir: Path, profile: DeviceProfile, transport: str, preflight: dict, plan: dict,
                  agent_summary: dict) -> dict:
    """Per item, the rounds pooled: medians of the per-round percentiles, their spread, memory, correctness, and
    the board's accuracy on the test split where it was measured."""
    items, power = [], power_warnings(preflight)  # a Jetson not at full power spoils every row measured so
    order = runs.read_order(run_dir)
    for item in plan["items"]:
        measured = runs.read_rounds(run_dir, item["id"])
        good = [r for r in measured.values() if "error" not in r]
        items.append({**{k: item[k] for k in ("id", "bundle", "format", "runtime", "threads", "precision")
                         if k in item},
                      "power_warnings": power,
                      "probe": item.get("probe", False), "rounds": len({n for (n, _), r in measured.items()
                                                                        if "error" not in r}),
                      "measurements": len(good),
                      "errors": [r["error"] for r in measured.values() if "error" in r],
                      "positions": [[i + 1 for i, name in enumerate(ids) if name == item["id"]] or None
                                    for ids in order.get("rounds", [])],
                      **(_pool(good) if good else {}),
                      **_agent_facts({runs.measurement_name(k): r for k, r in measured.items() if "error" not in r})})
    emulated = profile.emulated or any(r.get("emulated") for r in preflight["interpreters"].values())
    return {"run_id": run_dir.name, "device": profile.to_dict(), "transport": transport,
            "machine": preflight["machine"], "emulated": emulated,
            "timing_label": "emulated (qemu): not a board's timing" if emulated else "measured on the board",
            "plan": plan, "agent": agent_summary, "order": order, "items": items}


def _agent_facts(rounds: dict[str, dict]) -> dict:
    """What the agent knows beside the timings, over the good measurements (r3, r3b -> result): its warnings, each
    kind once with the measurements that raised it; how warm-up ended; what actually ran the model (ORT's providers,
    TFLite's delegate). A value that differs between rounds is kept as the list of its values, in round order, and
    named in `warnings`."""
    kinds: dict[str, tuple[str, list[str]]] = {}
    for name, result in rounds.items():
        for warning in result.get("warnings", []):
            kinds.setdefault(warning.split(":")[0], (warning, []))[1].append(name)
    warnings = [f"{text} ({', '.join(seen)})" for text, seen in kinds.values()]
    facts: dict = {}
    for key in ("providers_used", "delegate"):
        seen = list(dict.fromkeys(json.dumps(r.get("runtime", {}).get(key)) for r in rounds.values()))
        values = [json.loads(v) for v in seen]
        facts[key] = values[0] if len(values) == 1 else (values or None)
        if len(values) > 1:
            warnings.append(f"{key} differed between rounds: {', '.join(seen)}")
    stopped = [r.get("warmup", {}).get("stopped") for r in rounds.values()]
    return {"warnings": warnings, **facts, "warmup_stopped": stopped,
            "warmup_converged": bool(stopped) and all(s == "stable" for s in stopped),
            "warmup_s_max": max((r["warmup"]["seconds"] for r in rounds.values() if "warmup" in r), default=None)}


def bundle_facts(manifest: dict) -> dict:
    """What the report compares besides time: model size and MACs, pruning, torch accuracy, artifact bytes."""
    pruning = manifest["pruning"]
    test = None
    if pruning is not None:
        test = pruning["test"]["finetuned"] or pruning["test"]["pruned"]
    probe = bool(manifest.get("probe"))
    return {
        "model": manifest["model"]["name"], "data": manifest["data"]["name"], "probe": probe,
        "method": "probe" if probe else pruning["method"] if pruning else (CONTROL if manifest.get("control")
                                                                           else "dense"),
        "sparsity": None if probe else pruning["requested_sparsity"] if pruning else 0.0,
        "torch_test": test, "torch_test_dense": pruning["test"]["dense"] if pruning else None,
        "quantization": manifest["quantization"]["scheme"] if manifest["quantization"] else None,
        **{k: manifest["model"][k] for k in ("parameters", "nonzero_parameters", "density", "macs")},
        "artifacts": {fmt: {"bytes": a["bytes"], "zstd_bytes": a["zstd_bytes"]}
                      for fmt, a in manifest["artifacts"].items()},
    }


def _pool(rounds: list[dict]) -> dict:
    p50s = [r["latency"]["p50"] for r in rounds]
    median = statistics.median(p50s)
    return {
        "p50_s": median,
        "throttled": any(throttled(r) for r in rounds),
        "p90_s": statistics.median(r["latency"]["p90"] for r in rounds),
        "p99_s": statistics.median(r["latency"]["p99"] for r in rounds),
        "p50_spread": (max(p50s) - min(p50s)) / median if median else None,
        "throughput_per_s": statistics.median(r["latency"]["throughput_per_s"] for r in rounds),
        "load_s": _median_of_known(r["load_s"] for r in rounds),  # None for trtexec (engine load not separate)
        "peak_rss_kib": max(r["memory_kib"]["peak_rss"] or 0 for r in rounds),
        **({"engine": _engine(rounds)} if rounds[0]["runtime"]["name"] == TENSORRT else {}),
        "max_abs_error": max(r["correctness"]["max_abs_error"] for r in rounds),
        "correct": all(r["correctness"]["within_tolerance"] for r in rounds),
        "runtime_version": rounds[0]["runtime"]["version"],
        **_accuracy(rounds),
    }


def _median_of_known(values) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def _engine(rounds: list[dict]) -> dict:
    """TensorRT: engine size and build time (built in the first round, reused after), GPU compute time and the
    peak shared (CPU + GPU) memory tegrastats saw while timing."""
    built = [r["engine"]["build_s"] for r in rounds if r["engine"].get("build_s") is not None]
    peaks = [r["shared_memory_peak"]["ram_used_mb"] for r in rounds if r.get("shared_memory_peak")]
    return {"bytes": rounds[0]["engine"]["bytes"], "build_s": built[0] if built else None,
            "precision": rounds[0]["runtime"]["precision"],
            "gpu_compute_p50_s": statistics.median(r["gpu_compute"]["p50"] for r in rounds),
            "shared_memory_peak_mb": max(peaks) if peaks else None}


def _accuracy(rounds: list[dict]) -> dict:
    """The board's test-split accuracy: measured in round 1 only, as it cannot change between rounds."""
    measured = next((r["accuracy"] for r in rounds if "accuracy" in r), None)
    if measured is None:
        return {}
    return {"accuracy": {k: measured[k] for k in ("mse", "mae", "windows", "error") if k in measured}}


def _json_line(stdout) -> dict:
    """The agent's answer: its last JSON line that is not a progress event."""
    text = stdout.decode(errors="replace") if isinstance(stdout, bytes) else (stdout or "")
    for line in reversed(text.strip().splitlines()):
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict) and "event" not in value:
            return value
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _first_line(stderr) -> str:
    text = stderr.decode(errors="replace") if isinstance(stderr, bytes) else (stderr or "")
    return text.strip().splitlines()[0][:200] if text.strip() else ""


