"""`tsprune-edge devices list|show|check`."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import typer
from rich.table import Table

from tsprune_edge.cli import ssh_options
from tsprune_edge.cli.output import table_console
from tsprune_edge.errors import BoardError

app = typer.Typer(help="Device profiles and board checks.", no_args_is_help=True)


@app.command("list")
def list_command() -> None:
    """The built-in and user device profiles."""
    from tsprune_edge.devices.profiles import available_profiles, load_profile, profile_dir

    table = Table(title=f"devices (user profiles: {profile_dir()}/<name>.toml)")
    for column in ("name", "arch", "cores", "runtimes", "threads", "round_to", "description"):
        table.add_column(column)
    for name in available_profiles():
        p = load_profile(name)
        table.add_row(p.name, p.arch, str(p.cores), ", ".join(p.runtimes), ",".join(map(str, p.threads)),
                      str(p.round_to), p.description)
    table_console().print(table)


@app.command("show")
def show_command(name: str = typer.Argument(..., help="Profile name.")) -> None:
    """Every field of one profile, as JSON."""
    from tsprune_edge.devices.profiles import load_profile

    print(json.dumps(load_profile(name).to_dict(), indent=2))


@app.command("check")
def check_command(
    device: str = typer.Option(..., help="Device profile."),
    host: str = ssh_options.host(),
    port: int = ssh_options.port(),
    identity: Path = ssh_options.identity(),
    accept_new_host_key: bool = ssh_options.accept_new_host_key(),
    ssh_config: Path = ssh_options.ssh_config(),
) -> None:
    """Reach the board, copy the agent and run its preflight under every interpreter the profile uses: Python,
    runtimes (with a fix for each failure), CPU, memory, disk."""
    from tsprune_edge.devices.bench import (
        AGENT,
        BenchRequest,
        board_notes,
        open_transport,
        power_warnings,
        run_preflight,
        usable_runtime,
    )
    from tsprune_edge.devices.profiles import load_profile
    from tsprune_edge.devices.setup_record import board_profile

    ssh_options.check(port)
    profile = load_profile(device)
    request = BenchRequest(device=device, host=host, accept_new_host_key=accept_new_host_key, ssh_config=ssh_config,
                           port=port, identity=identity)
    transport = open_transport(profile, request)
    remote = f"{profile.workdir.rstrip('/')}/check-{secrets.token_hex(6)}"
    made = False
    try:
        stock = profile
        profile = board_profile(transport, profile)
        made = _make_own_folder(transport, remote)
        transport.put([AGENT], remote, 60)
        report = run_preflight(transport, profile, remote, request)
    finally:
        if made:  # only the folder this check made: nothing else under the workdir is touched
            transport.run(["rm", "-rf", "--", remote], timeout=60)
        transport.close()
    table = Table(title=f"{profile.name} via {transport.name}: {report['machine']}"
                        + (" (emulated)" if any(r.get("emulated") for r in report["interpreters"].values()) else ""))
    for column in ("interpreter", "python", "runtime", "runs", "version", "problem / fix"):
        table.add_column(column)
    for python, found in report["interpreters"].items():
        for runtime, info in found["runtimes"].items():
            table.add_row(python, found["python"], runtime, "yes" if info.get("runs") else "no",
                          info.get("version") or "-", info.get("fix") or info.get("error") or "")
    table_console().print(table)
    for fmt in ("onnx", "tflite"):
        chosen = usable_runtime(fmt, profile, report)
        print(f"{fmt}: " + (f"{chosen[0]} ({chosen[1]})" if chosen else "no runtime runs on this board"))
    for warning in power_warnings(report):
        print(f"warning: {warning}")
    for note in board_notes(report):
        print(f"note: {note}")
    missing = [fmt for fmt in profile.readable_formats() if usable_runtime(fmt, profile, report) is None]
    if missing:
        state = "its setup no longer runs" if profile is not stock else "it is not set up"
        print(f"missing: a runtime for {', '.join(missing)} ({state}); set it up with: "
              + setup_command_line(device, host, port, identity, ssh_config))


def setup_command_line(device: str, host: str | None, port: int | None, identity: Path | None,
                       ssh_config: Path | None) -> str:
    """The exact `devices setup` command for this board, with the SSH options the user gave."""
    import shlex

    argv = ["tsprune-edge", "devices", "setup", "--device", device]
    for option, value in (("--host", host), ("--port", port), ("--identity", identity),
                          ("--ssh-config", ssh_config)):
        if value is not None:
            argv += [option, str(value)]
    return shlex.join(argv)


@app.command("setup")
def setup_command(
    device: str = typer.Option(..., help="Device profile."),
    host: str = ssh_options.host(),
    port: int = ssh_options.port(),
    identity: Path = ssh_options.identity(),
    accept_new_host_key: bool = ssh_options.accept_new_host_key(),
    ssh_config: Path = ssh_options.ssh_config(),
    wheel: Path = typer.Option(None, help="An ONNX Runtime wheel file to install on the board (NVIDIA's "
                               "onnxruntime_gpu for a Jetson), copied over and checked by sha256."),
    offline: bool = typer.Option(False, help="The board has no internet: this machine downloads the wheels for "
                                 "the board's platform and Python and copies them over."),
) -> None:
    """Take a board from its stock OS to ready: a venv under the profile's workdir, pip upgraded in it, the
    profile's runtimes at versions that run there, recorded in <workdir>/setup.json for bench, fit, sweep and
    devices check. A board already set up is left as it is."""
    from rich.console import Console

    from tsprune_edge.devices.bench import BenchRequest, open_transport
    from tsprune_edge.devices.profiles import load_profile
    from tsprune_edge.devices.setup import SetupRequest, setup

    ssh_options.check(port)
    profile = load_profile(device)
    request = BenchRequest(device=device, host=host, accept_new_host_key=accept_new_host_key, ssh_config=ssh_config,
                           port=port, identity=identity)
    with open_transport(profile, request) as transport:
        setup(SetupRequest(device=device, wheel=wheel, offline=offline), transport,
              Console(stderr=True, soft_wrap=True))


def _make_own_folder(transport, remote: str) -> bool:
    """Create `remote` under the workdir with a plain `mkdir`, which fails on a name that exists: a folder this
    check did not make is never used, and so never removed."""
    parent = remote.rsplit("/", 1)[0] or "/"
    transport.run(["mkdir", "-p", "--", parent], timeout=60)
    done = transport.run(["mkdir", "--", remote], timeout=60)
    if done.returncode != 0:
        reason = (done.stderr or b"").decode("utf-8", "replace").strip().splitlines()[:1]
        raise BoardError(f"{transport.name}: cannot create {remote} ({reason[0] if reason else 'mkdir failed'}); "
                         "check the profile's workdir and the board's disk")
    return True
