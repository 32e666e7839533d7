"""Transports against a real sshd on loopback (tests/sshd.py): no mocks, the same ssh/scp/rsync a user runs."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.sshd import SshServer, free_port, make_key, port_open, running_sshd, tool
from tsprune_edge.devices.transport import LocalTransport, SshTransport, split_destination
from tsprune_edge.errors import BoardError, UserError

AWKWARD_ARGS = ["a b", "it's", '"quoted"', "$HOME", "a;b", "`id`", "*", "back\\slash", "", "new\nline"]


def via_alias(server: SshServer, **kwargs) -> SshTransport:
    return SshTransport("board", ssh_config=server.ssh_config, **kwargs)


def explicit(server: SshServer, **kwargs) -> SshTransport:
    """No ssh config of ours: destination, port, key and known_hosts all passed in."""
    options = {"port": server.port, "identity": server.identity, "known_hosts": server.known_hosts} | kwargs
    return SshTransport(server.destination, **options)


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def make_tree(root: Path) -> Path:
    """Nested folders, binary data, an empty file, a hidden file and a name with a space."""
    (root / "bundle" / "nested" / "deeper").mkdir(parents=True)
    (root / "bundle" / "model.onnx").write_bytes(os.urandom(2 << 20))
    (root / "bundle" / "nested" / "deeper" / "samples.npz").write_bytes(os.urandom(70_001))
    (root / "bundle" / "nested" / "empty").write_bytes(b"")
    (root / "bundle" / ".hidden").write_text("hidden\n")
    (root / "bundle" / "with space.json").write_text('{"a": 1}\n')
    (root / "plan.json").write_text('{"items": []}\n')
    return root


def test_run_through_the_config_alias(sshd_server: SshServer) -> None:
    with via_alias(sshd_server) as board:
        assert board.name == f"ssh {sshd_server.user}@127.0.0.1:{sshd_server.port}"
        done = board.run(["echo", "hello"], timeout=30)
        assert (done.returncode, done.stdout, done.args) == (0, b"hello\n", ["echo", "hello"])
        assert board.run(["sh", "-c", "echo oops >&2; exit 3"], timeout=30).returncode == 3


def test_run_with_explicit_port_identity_and_known_hosts(sshd_server: SshServer) -> None:
    with explicit(sshd_server) as board:
        assert board.run(["id", "-un"], timeout=30).stdout.decode().strip() == sshd_server.user
        assert board.run(["cat"], timeout=30, input=b"\x00binary\xff").stdout == b"\x00binary\xff"


def test_a_command_exiting_255_is_the_commands_status_not_a_transport_error(sshd_server: SshServer) -> None:
    """ssh also exits 255 when it fails; only ssh's own log (kept apart with -E) decides which it was."""
    with via_alias(sshd_server) as board:
        done = board.run(["sh", "-c", "echo 'ssh: connect to host x: Connection refused' >&2; exit 255"], timeout=30)
    assert done.returncode == 255 and b"Connection refused" in done.stderr


def test_argv_arrives_verbatim_through_the_login_shell(sshd_server: SshServer) -> None:
    with via_alias(sshd_server) as board:
        done = board.run(["printf", "%s\\0", *AWKWARD_ARGS], timeout=30)
    assert done.stdout.decode().split("\0")[:-1] == AWKWARD_ARGS


@pytest.mark.parametrize("copier, tool_used", [("auto", "rsync"), ("scp", "scp")])
def test_put_and_get_round_trip_a_folder_tree(sshd_server: SshServer, tmp_path: Path, copier: str,
                                              tool_used: str) -> None:
    tool("rsync")  # without it "auto" would quietly test scp twice
    local = make_tree(tmp_path / "local")
    remote = f"{tmp_path}/on the board/run 1"
    with explicit(sshd_server, copier=copier) as board:
        board.put([local / "bundle", local / "plan.json"], remote, timeout=60)
        assert board.copy_tool == tool_used
        assert tree(Path(remote)) == tree(local)  # the "board" is this machine: look at what landed
        board.get(remote, tmp_path / "back" / "raw", timeout=60)
    assert tree(tmp_path / "back" / "raw") == tree(local)


@pytest.mark.parametrize("copier, tool_used", [("auto", "rsync"), ("scp", "scp")])
def test_an_ssh_url_reaches_the_board_for_ssh_scp_and_rsync(sshd_server: SshServer, tmp_path: Path, copier: str,
                                                             tool_used: str) -> None:
    """ssh reads ssh://user@host:port; scp and rsync do not, so the port goes apart and their targets stay
    user@host:path."""
    local = make_tree(tmp_path / "local")
    remote = f"{tmp_path}/board"
    url = f"ssh://{sshd_server.user}@127.0.0.1:{sshd_server.port}"
    with SshTransport(url, identity=sshd_server.identity, known_hosts=sshd_server.known_hosts,
                      copier=copier) as board:
        assert (board.destination, board.name) == (sshd_server.destination,
                                                   f"ssh {sshd_server.user}@127.0.0.1:{sshd_server.port}")
        assert board.run(["echo", "in"], timeout=30).stdout == b"in\n"
        board.put([local / "bundle"], remote, timeout=60)
        board.get(remote, tmp_path / "back", timeout=60)
        assert board.copy_tool == tool_used
    assert tree(tmp_path / "back") == {k: v for k, v in tree(local).items() if k.startswith("bundle/")}


@pytest.mark.parametrize("given, port, expected", [
    ("ssh://pi@raspberrypi.local:2222", None, ("pi@raspberrypi.local", 2222)),
    ("ssh://pi@raspberrypi.local:2222/", 2222, ("pi@raspberrypi.local", 2222)),
    ("ssh://board", 2200, ("board", 2200)),
    ("ssh://nvidia@[fe80::1%eth0]:22", None, ("nvidia@fe80::1%eth0", 22)),
    ("pi@10.0.0.5", 2222, ("pi@10.0.0.5", 2222)),
    ("board", None, ("board", None)),
])
def test_ssh_urls_become_a_destination_and_a_port(given: str, port: int | None, expected: tuple) -> None:
    assert split_destination(given, port) == expected


@pytest.mark.parametrize("given, port, message", [
    ("ssh://pi@host:2222", 22, "'ssh://pi@host:2222' names port 2222 but --port says 22; give the port once"),
    ("ssh://pi@host:99999", None, "bad SSH port 99999 in 'ssh://pi@host:99999'; ports are 1 to 65535"),
    ("ssh://pi@host/home/pi", None, "bad SSH destination 'ssh://pi@host/home/pi'; pass ssh://user@host:port, "
                                    "user@host or a Host alias"),
])
def test_bad_ssh_urls_are_one_line(given: str, port: int | None, message: str) -> None:
    with pytest.raises(UserError) as err:
        split_destination(given, port)
    assert str(err.value) == message


def test_an_ssh_url_cannot_smuggle_an_option() -> None:
    with pytest.raises(UserError, match="^bad SSH destination '-oProxyCommand=touch pwned'; pass user@address"):
        SshTransport("ssh://-oProxyCommand=touch pwned")


def test_get_of_a_missing_folder_is_a_user_error(sshd_server: SshServer, tmp_path: Path) -> None:
    with via_alias(sshd_server) as board, pytest.raises(BoardError, match="^copying from .* failed: .*No such file"):
        board.get(f"{tmp_path}/nothing here", tmp_path / "back", timeout=30)


def test_connection_refused(tmp_path: Path) -> None:
    port = free_port()
    started = time.monotonic()
    with SshTransport("root@127.0.0.1", port=port, known_hosts=tmp_path / "kh") as board, \
            pytest.raises(UserError) as err:
        board.run(["true"], timeout=30)
    assert str(err.value) == f"cannot reach 127.0.0.1:{port} (connection refused); is sshd running and the port right?"
    assert time.monotonic() - started < 5, "a refused connection is not worth a retry"


def test_a_key_the_board_does_not_know(sshd_server: SshServer, tmp_path: Path) -> None:
    make_key(tmp_path / "stranger")
    with explicit(sshd_server, identity=tmp_path / "stranger") as board, pytest.raises(UserError) as err:
        board.run(["true"], timeout=30)
    assert str(err.value) == (
        f"127.0.0.1 refused our key for {sshd_server.user}; install it on the board with `ssh-copy-id -i "
        f"{tmp_path / 'stranger'} -p {sshd_server.port} {sshd_server.destination}` or pass the key it accepts")


def test_unknown_host_key_is_refused_then_accepted_on_request(sshd_server: SshServer, tmp_path: Path) -> None:
    known_hosts = tmp_path / "known_hosts"
    with explicit(sshd_server, known_hosts=known_hosts) as board, pytest.raises(UserError) as err:
        board.run(["true"], timeout=30)
    assert str(err.value) == ("127.0.0.1's host key is not in known_hosts; connect once with ssh, or pass "
                              "--accept-new-host-key")
    assert not known_hosts.exists()
    with explicit(sshd_server, known_hosts=known_hosts, accept_new_host_key=True) as board:
        done = board.run(["echo", "in"], timeout=30)
    assert (done.stdout, done.stderr) == (b"in\n", b""), "ssh's 'Permanently added' note must not reach stderr"
    key_type, key = sshd_server.host_key_pub.split()[:2]
    assert f"{key_type} {key}" in known_hosts.read_text()
    found = subprocess.run([tool("ssh-keygen"), "-F", f"[127.0.0.1]:{sshd_server.port}", "-f", str(known_hosts)],
                           capture_output=True)
    assert found.returncode == 0, "the key is recorded for this host and port (hashed or not)"


def test_a_changed_host_key_is_refused_even_with_accept_new(sshd_server: SshServer, tmp_path: Path) -> None:
    impostor = make_key(tmp_path / "impostor").split()
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{sshd_server.port} {impostor[0]} {impostor[1]}\n")
    changed = (r"^127\.0\.0\.1's host key has CHANGED .* refusing to connect .* `"
               rf"ssh-keygen -f {re.escape(str(known_hosts))} -R '\[127\.0\.0\.1\]:{sshd_server.port}'`$")
    with explicit(sshd_server, known_hosts=known_hosts, accept_new_host_key=True) as board, \
            pytest.raises(UserError, match=changed):
        board.run(["true"], timeout=30)


def test_a_command_past_its_timeout(sshd_server: SshServer) -> None:
    with via_alias(sshd_server) as board:
        board.run(["true"], timeout=30)  # connect first: only the command's own time counts below
        started = time.monotonic()
        with pytest.raises(BoardError) as err:
            board.run(["sleep", "5"], timeout=1)
        assert str(err.value) == f"{board.name}: `sleep 5` timed out after 1 s"
        assert time.monotonic() - started < 3
        assert board.run(["echo", "still here"], timeout=30).stdout == b"still here\n"


@pytest.fixture
def silent_server() -> Iterator[tuple[int, list[socket.socket]]]:
    """A TCP port that accepts connections and never says a word (a hung sshd or a stalled network)."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    yield listener.getsockname()[1], accepted
    listener.close()
    for conn in accepted:
        conn.close()


def test_a_stalled_connection_is_retried_once(silent_server: tuple[int, list[socket.socket]],
                                              tmp_path: Path) -> None:
    port, accepted = silent_server
    with SshTransport("root@127.0.0.1", port=port, known_hosts=tmp_path / "kh", connect_timeout=1) as board, \
            pytest.raises(UserError) as err:
        board.run(["true"], timeout=30)
    assert str(err.value) == (f"cannot reach 127.0.0.1:{port} (connection timed out); is the board on and the "
                              "address right?")
    assert len(accepted) == 2


def test_close_stops_the_shared_connection_and_removes_its_folder(sshd_server: SshServer) -> None:
    board = via_alias(sshd_server)
    board.run(["true"], timeout=30)
    assert (board.control_dir / "mux").is_socket()
    assert len(str(board.control_dir / "mux")) < 80, "unix socket paths are limited to ~104 bytes"
    board.close()
    board.close()
    assert not board.control_dir.exists()


def test_sshd_is_stopped_after_the_fixture(tmp_path: Path) -> None:
    with running_sshd(tmp_path / "sshd") as server, via_alias(server) as board:
        assert board.run(["true"], timeout=30).returncode == 0
    assert not port_open(server.port)
    with pytest.raises(ProcessLookupError):
        os.kill(server.pid, 0)


def test_missing_openssh_fails_with_the_install_hint() -> None:
    with pytest.raises(pytest.fail.Exception, match="run scripts/ci-apt.sh"):
        tool("sshd-that-is-not-installed")


def test_local_transport_runs_and_copies(tmp_path: Path) -> None:
    local = make_tree(tmp_path / "local")
    board = LocalTransport()
    assert board.run(["sh", "-c", "printf out; exit 4"], timeout=30).returncode == 4
    assert board.run(["no-such-command-here"], timeout=30).returncode == 127
    with pytest.raises(BoardError, match=r"^local: `sleep 5` timed out after 0\.5 s$"):
        board.run(["sleep", "5"], timeout=0.5)
    board.put([local / "bundle", local / "plan.json"], str(tmp_path / "remote"), timeout=30)
    board.get(str(tmp_path / "remote"), tmp_path / "back", timeout=30)
    assert tree(tmp_path / "back") == tree(local)
    board.close()


# A command that prints `first`, then waits (up to 20 s) for the caller to create `go`: it only finishes early if
# the caller saw `first` while the command was still running, i.e. the line was streamed, not read at the end.
WAIT_FOR_GO = ("echo first; i=0; while [ ! -e \"$1\" ] && [ $i -lt 200 ]; do sleep 0.1; i=$((i+1)); done; "
               "[ -e \"$1\" ] && echo streamed || echo 'not streamed'; echo to-stderr >&2")


def _streamed_run(board, go: Path) -> tuple[list[str], subprocess.CompletedProcess, float]:
    lines: list[str] = []

    def on_line(line: str) -> None:
        lines.append(line)
        if line == "first":
            go.touch()

    started = time.monotonic()
    done = board.run(["sh", "-c", WAIT_FOR_GO, "sh", str(go)], timeout=60, on_line=on_line)
    return lines, done, time.monotonic() - started


@pytest.mark.parametrize("where", ["local", "ssh"])
def test_stdout_lines_stream_while_the_command_runs(sshd_server: SshServer, tmp_path: Path, where: str) -> None:
    board = LocalTransport() if where == "local" else via_alias(sshd_server)
    with board:
        lines, done, seconds = _streamed_run(board, tmp_path / "go")
    assert lines == ["first", "streamed"] and seconds < 10
    assert (done.returncode, done.stdout, done.stderr) == (0, b"first\nstreamed\n", b"to-stderr\n")


def test_a_streamed_command_past_its_timeout_is_stopped(tmp_path: Path) -> None:
    lines: list[str] = []
    started = time.monotonic()
    with pytest.raises(BoardError, match=r"timed out after 1 s$"):
        LocalTransport().run(["sh", "-c", "echo one; sleep 30"], timeout=1, on_line=lines.append)
    assert lines == ["one"] and time.monotonic() - started < 5


def test_fit_and_sweep_hand_port_and_identity_to_the_transport(tmp_path: Path) -> None:
    """What `fit --port --identity` and `sweep --port --identity` build reaches ssh as given (`ssh -G` only: no
    connection is made)."""
    from tsprune_edge.devices.bench import open_transport
    from tsprune_edge.devices.profiles import load_profile
    from tsprune_edge.fit.measure import Target
    from tsprune_edge.sweep.spec import SweepSpec

    key = tmp_path / "key"
    make_key(key)
    fit = Target(device="rpi4", host="pi@192.0.2.1", port=2222, identity=key).bench_request(tmp_path, tmp_path, False)
    sweep = SweepSpec(models=("dlinear",), device="rpi4", host="ssh://pi@192.0.2.1:2200",
                      identity=str(key)).bench_request(tmp_path, tmp_path)
    for request, port in ((fit, 2222), (sweep, 2200)):
        assert request.identity == key
        with open_transport(load_profile("rpi4"), request) as board:
            assert board.name == f"ssh pi@192.0.2.1:{port}"
            assert board._settings["identityfile"] == str(key)


def test_a_local_fetch_renames_each_file_into_place_and_leaves_no_partial(tmp_path):
    board, here = tmp_path / "board", tmp_path / "here"
    (board / "nested").mkdir(parents=True)
    (board / "a__r1.json").write_text('{"round": 1}')
    (board / "nested" / "b.json").write_text("b")
    (here / "nested").mkdir(parents=True)
    (here / "nested" / ".b.json.part").write_text("")  # what a fetch cut short by a kill leaves
    LocalTransport().get(str(board), here, timeout=10)
    (board / "a__r1.json").write_text('{"round": 1, "again": true}')
    LocalTransport().get(str(board), here, timeout=10)
    assert (here / "a__r1.json").read_text() == '{"round": 1, "again": true}'
    assert (here / "nested" / "b.json").read_text() == "b"
    assert sorted(p.name for p in here.rglob("*") if p.is_file()) == ["a__r1.json", "b.json"]
