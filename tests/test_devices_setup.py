"""`tsprune-edge devices setup` on real boards made of this machine: its CPython 3.11 behind the loopback sshd (the
Pi OS bookworm plan: onnxruntime and ai-edge-litert from PyPI into a venv, then a bench that runs that venv), its
CPython 3.6.15 with pip 18 (the Nano plan: pip upgraded to the last one for 3.6, numpy 1.19.4, ORT 1.10.0 without
its declared numpy, OPENBLAS_CORETYPE in the agent's environment) installed `--offline` behind an sshd whose
commands run in a network namespace of their own (no network at all), and every bad input refused in one line
with nothing left on the board. The emulated arm64 boards run the same command in tests/test_board_setup.py.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.bench_args import FAST
from tests.refusals import assert_one_line_error
from tests.sshd import running_sshd
from tsprune_edge.devices.profiles import load_profile
from tsprune_edge.devices.setup import _download
from tsprune_edge.devices.setup_plan import make_plan, parse_facts

PY311 = Path.home() / ".pyenv" / "versions" / "3.11.7" / "bin" / "python3.11"
PY36 = Path.home() / ".pyenv" / "versions" / "3.6.15" / "bin" / "python3.6"
PY27 = Path.home() / ".pyenv" / "versions" / "2.7.18" / "bin" / "python2.7"
NANO_ENGINES = 'expected_engines = {onnxruntime = ["TensorrtExecutionProvider", "CUDAExecutionProvider"]}\n'


def write_profile(folder: Path, name: str, python: Path | str, workdir: Path, *, local: bool,
                  runtimes: tuple[str, ...] = ("onnxruntime", "ai_edge_litert", "tflite_runtime"),
                  extra: str = "") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.toml").write_text(
        f'description = "this machine as a board"\narch = "x86_64"\ncores = 2\nmemory_mb = 0\n'
        f'python = "{python}"\nworkdir = "{workdir}"\nlocal = {json.dumps(local)}\n'
        f'runtimes = {json.dumps(list(runtimes))}\n{extra}')


@pytest.fixture
def profiles(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("TSPRUNE_EDGE_DEVICES_DIR", str(tmp_path / "profiles"))
    monkeypatch.setenv("TSPRUNE_EDGE_WHEEL_CACHE", str(tmp_path / "wheel-cache"))
    return tmp_path / "profiles"


def tree(folder: Path) -> dict[str, tuple[int, int]]:
    """Every path under `folder` with its size and mtime: what a second setup must leave as it was."""
    return {str(p.relative_to(folder)): (p.lstat().st_size, p.lstat().st_mtime_ns) for p in folder.rglob("*")}


def test_setup_over_ssh_then_bench_runs_the_venv_and_a_second_setup_changes_nothing(cli, tmp_path, profiles,
                                                                                     sshd_server, bundles):
    board = tmp_path / "board"
    write_profile(profiles, "pi", PY311, board, local=False, extra='host = "board"\n')
    ssh = ("--ssh-config", str(sshd_server.ssh_config))
    result = cli("devices", "check", "--device", "pi", *ssh)
    assert result.code == 0, result.err
    assert result.out.splitlines()[-1] == ("missing: a runtime for onnx, tflite (it is not set up); set it up with: "
                                           f"tsprune-edge devices setup --device pi --ssh-config {ssh[1]}")

    result = cli("devices", "setup", "--device", "pi", *ssh)
    assert result.code == 0, result.err
    venv = f"{board}/venv/bin/python"
    assert result.out.splitlines() == [
        "note: tflite_runtime: not installed (tflite-runtime is optional: ai-edge-litert runs the TFLite files "
        "(tflite-runtime needs numpy<2, a venv of its own: docs/boards.md))",
        f"set up: pi runs {venv} (onnxruntime 1.32.0, ai_edge_litert 2.3.0); recorded in {board}/setup.json"]
    record = json.loads((board / "setup.json").read_text())
    assert {k: record[k] for k in ("format", "version", "device", "python", "base_python", "python_version",
                                   "runtimes", "requirements", "env", "how", "wheel")} == {
        "format": "tsprune-edge/setup", "version": 1, "device": "pi", "python": venv, "base_python": str(PY311),
        "python_version": "3.11.7", "runtimes": {"onnxruntime": "1.32.0", "ai_edge_litert": "2.3.0"},
        "requirements": ["onnxruntime==1.32.0", "ai-edge-litert==2.3.0"], "env": {}, "how": "online",
        "wheel": None}
    assert record["packages"]["onnxruntime"] == "1.32.0" and record["packages"]["numpy"].startswith("2.")
    assert sorted(p.name for p in board.iterdir()) == ["setup.json", "venv"]  # the copied wheels are gone

    result = cli("bench", "--device", "pi", *ssh, "--artifacts", str(bundles), "--results", str(tmp_path / "results"),
                 "--runtime", "onnxruntime,tflite", "--threads", "1", *FAST)
    assert result.code == 0, result.err
    (run,) = (tmp_path / "results").iterdir()
    summary = json.loads((run / "bench.json").read_text())
    assert summary["device"]["python"] == venv and summary["device"]["environment"] == {}
    assert {(i["runtime"], i["runtime_version"]) for i in summary["items"]} == {("onnxruntime", "1.32.0"),
                                                                               ("ai_edge_litert", "2.3.0")}
    assert all(i["correct"] for i in summary["items"])
    preflight = json.loads((run / "preflight.json").read_text())
    assert list(preflight["interpreters"]) == [venv] and preflight["interpreters"][venv]["executable"] == venv

    before = tree(board)
    result = cli("devices", "setup", "--device", "pi", *ssh)
    assert result.code == 0, result.err
    assert result.out == (f"already set up: pi runs {venv} (onnxruntime 1.32.0, ai_edge_litert 2.3.0); nothing "
                          "changed\n")
    assert tree(board) == before


@pytest.fixture
def offline_board(tmp_path):
    """A loopback sshd whose every command (ssh, scp, rsync) runs in a fresh network namespace: no network, not
    even loopback, as on a board without internet. This machine (the host) keeps its own."""
    wrapper = tmp_path / "no-network"
    wrapper.write_text('#!/bin/sh\nexec unshare -n /bin/sh -c "$SSH_ORIGINAL_COMMAND"\n')
    wrapper.chmod(0o755)
    with running_sshd(tmp_path / "sshd", extra_config=[f"ForceCommand {wrapper}"]) as server:
        yield server


def test_offline_setup_of_the_nano_plan_on_python_3_6_with_the_network_cut(cli, tmp_path, profiles, offline_board):
    board = tmp_path / "nano"
    write_profile(profiles, "nano", PY36, board, local=False, runtimes=("onnxruntime",),
                  extra='host = "board"\n' + NANO_ENGINES)
    ssh = ("--ssh-config", str(offline_board.ssh_config))
    cut = subprocess.run(["ssh", "-F", ssh[1], "board", PY36, "-c",
                          "import socket; socket.create_connection(('pypi.org', 443), 5)"], capture_output=True)
    assert cut.returncode != 0  # the board really has no network

    result = cli("devices", "setup", "--device", "nano", *ssh)  # online first: pip fails, nothing is left
    assert result.code == 3, result.err
    last = result.err.strip().splitlines()[-1]  # after the progress lines
    assert last.startswith("error: setup could not upgrade pip on the board: ") and last.endswith(
        "; fix: check the board's internet, or run setup with --offline (this machine downloads the wheels)"), last
    assert "Traceback" not in result.err
    assert sorted(p.name for p in board.iterdir()) == []  # the venv this run made is removed; no record

    result = cli("devices", "setup", "--device", "nano", "--offline", *ssh)
    assert result.code == 0, result.err
    venv = f"{board}/venv/bin/python"
    assert result.out.splitlines() == [
        "note: no --wheel given: installed PyPI's CPU-only onnxruntime 1.10.0; the nano profile expects "
        "TensorrtExecutionProvider or CUDAExecutionProvider, so bench says NOT JUDGED until you run setup again "
        "with --wheel onnxruntime_gpu-...-cp36-cp36m-linux_aarch64.whl (NVIDIA's Jetson Zoo)",
        f"set up: nano runs {venv} (onnxruntime 1.10.0; env OPENBLAS_CORETYPE=ARMV8); recorded in "
        f"{board}/setup.json"]
    record = json.loads((board / "setup.json").read_text())
    assert record["how"] == "offline" and record["env"] == {"OPENBLAS_CORETYPE": "ARMV8"}
    assert {k: record["packages"][k] for k in ("numpy", "onnxruntime", "pip", "protobuf")} == {
        "numpy": "1.19.4", "onnxruntime": "1.10.0", "pip": "21.3.1", "protobuf": "3.19.6"}
    cached = sorted(p.name for p in (tmp_path / "wheel-cache" / "linux_x86_64-glibc2.36-cp36").iterdir())
    assert [n.split("-")[0] for n in cached] == ["flatbuffers", "numpy", "onnxruntime", "pip", "protobuf"]
    assert sorted(p.name for p in board.iterdir()) == ["setup.json", "venv"]

    result = cli("devices", "check", "--device", "nano", *ssh)  # the agent runs under the venv and its env
    assert result.code == 0, result.err
    assert "onnx: onnxruntime (" + venv + ")" in result.out and "missing:" not in result.out
    before = tree(board)
    result = cli("devices", "setup", "--device", "nano", "--offline", *ssh)
    assert result.out == f"already set up: nano runs {venv} (onnxruntime 1.10.0); nothing changed\n"
    assert tree(board) == before

    # an ONNX Runtime wheel file named by the user (NVIDIA's GPU build on a real Nano; PyPI's x86_64 cp36 one here):
    # the record no longer matches, so setup copies it, checks its sha256 there and installs it
    wheel = next(p for p in (tmp_path / "wheel-cache" / "linux_x86_64-glibc2.36-cp36").iterdir()
                 if p.name.startswith("onnxruntime-"))
    result = cli("devices", "setup", "--device", "nano", "--offline", "--wheel", str(wheel), *ssh)
    assert result.code == 0, result.err
    assert result.out == (f"set up: nano runs {venv} (onnxruntime 1.10.0; env OPENBLAS_CORETYPE=ARMV8); recorded in "
                          f"{board}/setup.json\n")  # no CPU-only note: the wheel is the user's choice
    record = json.loads((board / "setup.json").read_text())
    assert record["wheel"] == {"name": wheel.name, "sha256": hashlib.sha256(wheel.read_bytes()).hexdigest()}
    assert record["requirements"][-1] == f"setup-wheels/{wheel.name}"
    (installed,) = board.glob("venv/lib/python3.6/site-packages/onnxruntime-1.10.0.dist-info")
    assert json.loads((installed / "direct_url.json").read_text())["url"].endswith(f"/setup-wheels/{wheel.name}")
    assert sorted(p.name for p in board.iterdir()) == ["setup.json", "venv"]


def test_the_nano_plan_downloads_for_aarch64_and_python_3_6(tmp_path, profiles):
    """The host side of --offline for a real Nano: pip download for manylinux2014 aarch64 and cp36 really runs."""
    facts = parse_facts("machine=aarch64\nlong_bit=64\npython_found=1\npython=3.6.9\npointer_bits=64\nelf_bits=64\n"
                        "glibc=2.27\npip=pip 9.0.1 from /usr/lib/python3/dist-packages (python 3.6)\nvenv_works=1\n"
                        "free_kib=20000000\nos=Ubuntu 18.04.6 LTS\n")
    plan = make_plan(load_profile("jetson-nano"), facts, "jetson-nano (ssh nano@jetson)")
    assert (plan.requirements, plan.no_deps, plan.env) == (("numpy==1.19.4", "protobuf<3.20", "flatbuffers"),
                                                           ("onnxruntime==1.10.0",), {"OPENBLAS_CORETYPE": "ARMV8"})
    from rich.console import Console

    files = _download(plan, facts, Console(file=open(os.devnull, "w")))
    names = sorted(f.name for f in files)
    assert [n for n in names if n.startswith(("numpy", "onnxruntime", "pip-"))] == [
        "numpy-1.19.4-cp36-cp36m-manylinux2014_aarch64.whl",
        "onnxruntime-1.10.0-cp36-cp36m-manylinux_2_17_aarch64.manylinux2014_aarch64.whl",
        "pip-21.3.1-py3-none-any.whl"]
    assert all(f.parent == tmp_path / "wheel-cache" / "linux_aarch64-glibc2.27-cp36" for f in files)


STOCK_64 = "machine=aarch64\nlong_bit=64\npython_found=1\npython=3.11.2\npointer_bits=64\nelf_bits=64\nglibc=2.36\n" \
           "venv_works=1\nfree_kib=9000000\n"


@pytest.mark.parametrize(("facts", "line"), [
    (STOCK_64.replace("long_bit=64", "long_bit=32").replace("pointer_bits=64", "pointer_bits=32"),
     "this board runs a 32-bit userland on a 64-bit kernel (aarch64): no ONNX Runtime or ai-edge-litert wheel "
     "exists for it; fix: install Raspberry Pi OS (64-bit), bookworm (Raspberry Pi Imager: Raspberry Pi OS (64-bit) "
     "or Raspberry Pi OS Lite (64-bit))"),
    (STOCK_64.replace("machine=aarch64", "machine=armv7l").replace("elf_bits=64", "elf_bits=32"),
     "this board runs a 32-bit userland on a kernel (armv7l): no ONNX Runtime or ai-edge-litert wheel exists for "
     "it; fix: install Raspberry Pi OS (64-bit), bookworm (Raspberry Pi Imager: Raspberry Pi OS (64-bit) or "
     "Raspberry Pi OS Lite (64-bit))"),
    (STOCK_64.replace("python=3.11.2", "python=3.8.10"),
     "rpi4 (ssh pi@pi)'s Python 3.8.10 is not one for the runtimes setup installs (it knows Python 3.6, 3.9, 3.11, "
     "3.12, 3.13); fix: flash the board's stock 64-bit OS (Raspberry Pi OS bookworm 64-bit, JetPack 4.6), or set "
     "python in the device profile to one of those"),
    (STOCK_64.replace("python=3.11.2", "python=3.14.0"), "rpi4 (ssh pi@pi)'s Python 3.14.0 is too new for the "
     "runtimes setup installs (it knows Python 3.6, 3.9, 3.11, 3.12, 3.13); fix: flash the board's stock 64-bit OS "
     "(Raspberry Pi OS bookworm 64-bit, JetPack 4.6), or set python in the device profile to one of those"),
    (STOCK_64.replace("venv_works=1", "venv_works=0"),
     "rpi4 (ssh pi@pi)'s python3 cannot make a virtual environment (no ensurepip/venv module); fix: sudo apt "
     "install python3-venv (or python3.11-venv), then run setup again"),
])
def test_a_board_read_as_unfit_is_refused_before_anything_is_installed(facts, line):
    from tsprune_edge.errors import UserError

    with pytest.raises(UserError) as refused:
        make_plan(load_profile("rpi4"), parse_facts(facts), "rpi4 (ssh pi@pi)")
    assert str(refused.value) == line


def _refused(cli, device: str, *args: str) -> str:
    result = cli("devices", "setup", "--device", device, *args)
    return assert_one_line_error(result).removeprefix("error: ")


def test_bad_input_is_one_line_and_leaves_nothing_on_the_board(cli, tmp_path, profiles):
    board = tmp_path / "work"
    write_profile(profiles, "here", PY311, board, local=True)
    wheel = tmp_path / "onnxruntime_gpu-1.11.0-cp38-cp38-linux_aarch64.whl"
    wheel.write_bytes(b"PK\x03\x04 not installed: the tags are checked first")
    assert _refused(cli, "here", "--wheel", str(wheel)) == (
        "--wheel onnxruntime_gpu-1.11.0-cp38-cp38-linux_aarch64.whl is built for cp38-cp38-linux_aarch64, but here "
        "(local) runs CPython 3.11.7 on x86_64 (it takes cp311-cp311 and linux_x86_64/manylinux); fix: pass the "
        "wheel built for cp311 x86_64")
    assert _refused(cli, "here", "--wheel", str(tmp_path / "absent.whl")) == (
        f"--wheel {tmp_path / 'absent.whl'} is not a file; fix: pass the path of the downloaded .whl")

    write_profile(profiles, "here", "/opt/none/python3", board, local=True)
    assert _refused(cli, "here") == (
        "here (local) has no /opt/none/python3 (not found on its PATH); fix: install it (sudo apt install python3 "
        "python3-venv) or set python in the device profile to the interpreter's full path")

    write_profile(profiles, "here", PY27, board, local=True)
    assert _refused(cli, "here") == (
        "here (local)'s Python 2.7.18 is too old for the runtimes setup installs (it knows Python 3.6, 3.9, 3.11, "
        "3.12, 3.13); fix: flash the board's stock 64-bit OS (Raspberry Pi OS bookworm 64-bit, JetPack 4.6), or set "
        "python in the device profile to one of those")
    assert not board.exists()

    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(small)], check=True)
    try:
        write_profile(profiles, "here", PY311, small / "work", local=True)
        assert _refused(cli, "here") == (
            f"here (local) has 64 MB free under {small / 'work'}, below the 1024 MB setup needs; fix: free space "
            "there or set workdir in the device profile to a disk with room")
        assert list(small.iterdir()) == []
    finally:
        subprocess.run(["umount", str(small)], check=True)


def test_a_wheel_for_another_python_or_not_onnxruntime_is_refused():
    from tsprune_edge.errors import UserError

    facts = parse_facts(STOCK_64.replace("python=3.11.2", "python=3.6.9").replace("glibc=2.36", "glibc=2.27"))
    nano = load_profile("jetson-nano")
    good = make_plan(nano, facts, "nano", Path("onnxruntime_gpu-1.11.0-cp36-cp36m-linux_aarch64.whl"))
    assert (good.requirements, good.no_deps) == (("numpy==1.19.4", "protobuf<3.20", "flatbuffers"),
                                                 ("setup-wheels/onnxruntime_gpu-1.11.0-cp36-cp36m-linux_aarch64.whl",))
    assert good.notes == ()  # the GPU wheel: nothing to warn about
    for name, words in (("onnxruntime_gpu-1.11.0-cp38-cp38-linux_aarch64.whl", "is built for cp38-cp38-linux_aarch64"),
                        ("onnxruntime_gpu-1.11.0-cp36-cp36m-linux_x86_64.whl", "is built for cp36-cp36m-linux_x86_64"),
                        ("numpy-1.19.4-cp36-cp36m-linux_aarch64.whl", "is not ONNX Runtime"),
                        ("onnxruntime.zip", "is not a wheel file name")):
        with pytest.raises(UserError) as refused:
            make_plan(nano, facts, "nano", Path(name))
        assert words in str(refused.value)


def test_a_tls_certificate_failure_names_pip_cert_or_offline():
    """pip behind a TLS-inspecting proxy prints both CERTIFICATE_VERIFY_FAILED and 'No matching distribution'; the
    fix must name the certificate, not the board's internet."""
    from tsprune_edge.devices.setup import _fix

    reason = ("Could not fetch URL https://pypi.org/simple/numpy/: ... [SSL: CERTIFICATE_VERIFY_FAILED] ... "
              "No matching distribution found for numpy==1.19.4")
    assert _fix(reason) == ("the board's pip does not trust the network's TLS certificate (a proxy that inspects "
                            "TLS?): name the proxy's CA bundle in the board's ~/.config/pip/pip.conf ([global] cert = "
                            "FILE), or run setup with --offline")
    assert _fix("No matching distribution found for numpy==1.19.4").startswith("check the board's internet")


@pytest.mark.parametrize(("text", "fragment"), [
    ("{not json", "is not a readable setup record; fix: run `tsprune-edge devices setup --device desktop` again"),
    ('{"format": "tsprune-edge/setup", "version": 1, "env": {}}',
     "lacks the venv's python; fix: run `tsprune-edge devices setup --device desktop` again"),
    ('{"format": "tsprune-edge/setup", "version": 99, "python": "/x/venv/bin/python"}', "setup.json"),
])
def test_a_damaged_setup_record_is_one_line_naming_it(tmp_path, text, fragment):
    """A setup.json edited by hand, cut short or written by a newer tool: refused naming the board's file and the
    fix, never read as a python to run."""
    from tsprune_edge.devices.setup_record import board_profile
    from tsprune_edge.devices.transport import LocalTransport
    from tsprune_edge.errors import UserError

    profile = dataclasses.replace(load_profile("desktop"), workdir=str(tmp_path))
    (tmp_path / "setup.json").write_text(text)
    with pytest.raises(UserError) as refused:
        board_profile(LocalTransport(), profile)
    message = str(refused.value)
    assert f"desktop:{tmp_path}/setup.json" in message and fragment in message
    assert "\n" not in message
