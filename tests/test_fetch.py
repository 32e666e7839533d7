"""Downloading datasets: tested against a real HTTP server on 127.0.0.1 serving ../shared/data."""

from __future__ import annotations

import functools
import http.server
import shutil
import threading
from pathlib import Path

import pytest

from tsprune_edge.data.fetch import sha256_of


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args) -> None:  # keep stderr for the command under test
        pass


@pytest.fixture
def serve():
    """Start a loopback HTTP server for a directory; stopped when the test ends."""
    servers = []

    def start(directory: Path) -> str:
        handler = functools.partial(QuietHandler, directory=str(directory))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def _shared() -> Path:
    from tests.paths import SHARED_DATA

    if not (SHARED_DATA / "ETTh1.csv").is_file():
        pytest.fail(f"the benchmark datasets are missing: expected {SHARED_DATA}")
    return SHARED_DATA


def test_fetch_downloads_and_verifies(cli, serve, tmp_path):
    url = serve(_shared())
    result = cli("data", "fetch", "ETTh1", "--mirror", url, "--dest", str(tmp_path))
    assert result.code == 0, result.err
    saved = tmp_path / "ETTh1.csv"
    assert result.out.strip() == str(saved)
    assert sha256_of(saved) == "f18de3ad269cef59bb07b5438d79bb3042d3be49bdeecf01c1cd6d29695ee066"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ETTh1.csv"]


def test_fetched_dataset_is_then_used_by_name(cli, serve, tmp_path, monkeypatch):
    monkeypatch.setenv("TSPRUNE_EDGE_DATA_DIR", str(tmp_path))
    url = serve(_shared())
    assert cli("data", "fetch", "illness", "--mirror", url).code == 0
    assert (tmp_path / "national_illness.csv").is_file()
    listing = cli("data", "list")
    assert listing.code == 0
    row = next(line for line in listing.out.splitlines() if "illness" in line)
    assert "yes" in row


def test_corrupt_download_is_rejected_and_nothing_saved(cli, serve, tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    shutil.copy(_shared() / "ETTh2.csv", mirror / "ETTh1.csv")  # right name, wrong bytes
    dest = tmp_path / "cache"
    result = cli("data", "fetch", "ETTh1", "--mirror", serve(mirror), "--dest", str(dest))
    assert result.code == 2
    assert result.err.count("\n") == 1 and "sha256" in result.err and "expected f18de3ad" in result.err
    assert not dest.exists() or list(dest.iterdir()) == []


def test_unreachable_server_gives_one_line(cli, tmp_path):
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = cli("data", "fetch", "ETTm1", "--mirror", f"http://127.0.0.1:{port}/", "--dest", str(tmp_path))
    assert result.code == 2
    assert result.err.startswith("error: could not download ETTm1") and result.err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_dataset_without_direct_url_says_how_to_get_it(cli, tmp_path):
    result = cli("data", "fetch", "weather", "--dest", str(tmp_path))
    assert result.code == 2
    assert "no direct download" in result.err and "--mirror" in result.err


def test_missing_file_on_mirror(cli, serve, tmp_path):
    result = cli("data", "fetch", "traffic", "--mirror", serve(tmp_path / "."), "--dest", str(tmp_path / "c"))
    assert result.code == 2 and "404" in result.err
