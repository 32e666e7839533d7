"""Downloading a registered dataset into the cache: verified by sha256, written atomically."""

from __future__ import annotations

import hashlib
import urllib.error
import urllib.request
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

from tsprune_edge.atomic import write_atomic
from tsprune_edge.data.registry import DATASETS, DatasetSpec, data_dir
from tsprune_edge.errors import UserError

_CHUNK = 1 << 16


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def spec_for(name: str) -> DatasetSpec:
    try:
        return DATASETS[name]
    except KeyError:
        known = ", ".join(["synthetic", *DATASETS])
        raise UserError(f"unknown dataset {name!r}; known: {known}, or pass a CSV path") from None


def download_url(spec: DatasetSpec, mirror: str | None) -> str:
    if mirror:
        return mirror.rstrip("/") + "/" + spec.filename
    if spec.url is None:
        raise UserError(f"{spec.name} has no direct download; get {spec.filename} from {spec.source} and pass its "
                        f"path with --data, or fetch it from a copy with --mirror URL")
    return spec.url


def fetch(name: str, mirror: str | None = None, dest_dir: Path | None = None, timeout: float = 60.0,
          show_progress: bool = True) -> Path:
    """Download `name` into `dest_dir` (default: the cache) unless a verified copy is already there."""
    spec = spec_for(name)
    dest = Path(dest_dir or data_dir()) / spec.filename
    if dest.is_file() and (spec.sha256 is None or sha256_of(dest) == spec.sha256):
        return dest
    url = download_url(spec, mirror)
    digest = hashlib.sha256()

    def stream(handle) -> None:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                total = int(response.headers.get("Content-Length") or 0) or None
                console = Console(stderr=True)
                with Progress(TextColumn(f"fetch {spec.name}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                              console=console, disable=not (show_progress and console.is_terminal),
                              transient=True) as progress:
                    task = progress.add_task("download", total=total)
                    for chunk in iter(lambda: response.read(_CHUNK), b""):
                        digest.update(chunk)
                        handle.write(chunk)
                        progress.advance(task, len(chunk))
        except (urllib.error.URLError, OSError) as exc:
            reason = f"HTTP {exc.code} {exc.reason}" if isinstance(exc, urllib.error.HTTPError) else \
                getattr(exc, "reason", exc)
            raise UserError(f"could not download {spec.name} from {url}: {reason}; "
                            "check the network or use --mirror") from None
        if spec.sha256 and digest.hexdigest() != spec.sha256:
            raise UserError(f"{spec.name} from {url} has sha256 {digest.hexdigest()}, expected {spec.sha256}; "
                            "the download is corrupt or not the official file, nothing was saved")

    try:
        write_atomic(dest, stream)
    except PermissionError:
        raise UserError(f"cannot write {dest}; set TSPRUNE_EDGE_DATA_DIR to a writable directory") from None
    return dest
