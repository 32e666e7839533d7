"""Downloading a registered dataset into the cache: verified by sha256, written atomically."""

from __future__ import annotations

import hashlib
import shutil
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

from tsprune_edge.atomic import write_atomic
from tsprune_edge.data.registry import DATASETS, DatasetSpec, data_dir
from tsprune_edge.errors import NO_ROOM, ResourceError, UserError

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


def check_mirror(mirror: str) -> None:
    """A mirror is an http(s) or file URL; anything else is one line before any download."""
    parts = urllib.parse.urlsplit(mirror)
    if parts.scheme not in ("http", "https", "file") or (parts.scheme != "file" and not parts.netloc) \
            or any(c.isspace() for c in mirror):
        raise UserError(f"--mirror {mirror!r} is not a URL; pass the base URL of a copy, for example "
                        "https://example.org/datasets")


def check_csv_head(head: bytes, name: str, url: str) -> None:
    """Bytes that are not the forecasting CSV format (an HTML error page a mirror served, say) are refused even
    where no sha256 is known."""
    try:
        text = head.decode("utf-8-sig")
    except UnicodeDecodeError as exc:  # a multi-byte character cut at the end of the head is fine
        if exc.start < len(head) - 4:
            raise UserError(f"{name} from {url} is not a UTF-8 text CSV; nothing was saved: check the URL") from None
        text = head[:exc.start].decode("utf-8-sig")
    first = text.splitlines()[0] if text else ""
    cells = [c.strip() for c in first.split(",")]
    if len(cells) < 2 or cells[0].lower() != "date":
        shown = first[:60] or "(empty)"
        raise UserError(f"{name} from {url} is not a forecasting CSV (first line {shown!r}, expected "
                        "`date,<var1>,...`); nothing was saved: check the URL")


def download_url(spec: DatasetSpec, mirror: str | None) -> str:
    if mirror:
        check_mirror(mirror)
        return mirror.rstrip("/") + "/" + spec.filename
    if spec.url is None:
        raise UserError(f"{spec.name} has no direct download; get {spec.filename} from {spec.source} and pass its "
                        f"path with --data, or fetch it from a copy with --mirror URL")
    return spec.url


def fetch(name: str, mirror: str | None = None, dest_dir: Path | None = None, timeout: float = 60.0,
          show_progress: bool = True, force: bool = False) -> Path:
    """Download `name` into `dest_dir` (default: the cache) unless a verified copy is already there; a file there
    that does not verify is replaced only with `force`."""
    spec = spec_for(name)
    dest = Path(dest_dir or data_dir()) / spec.filename
    url = download_url(spec, mirror)
    if dest.is_file() and (spec.sha256 is None or sha256_of(dest) == spec.sha256):
        return dest
    if dest.exists() and not force:
        raise UserError(f"{dest} exists and is not the verified {spec.name}; pass --force to replace it, or "
                        "choose another --dest")
    digest = hashlib.sha256()
    head = bytearray()

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
                        if len(head) < _CHUNK:
                            head.extend(chunk[:_CHUNK - len(head)])
                        digest.update(chunk)
                        handle.write(chunk)
                        progress.advance(task, len(chunk))
        except (urllib.error.URLError, OSError) as exc:
            if getattr(exc, "errno", None) in NO_ROOM:
                raise  # our disk, not the download: a full disk below
            reason = f"HTTP {exc.code} {exc.reason}" if isinstance(exc, urllib.error.HTTPError) else \
                getattr(exc, "reason", exc)
            fix = "check the mirror's URL" if mirror else "check the network or use --mirror"
            raise UserError(f"could not download {spec.name} from {url}: {reason}; {fix}") from None
        if spec.sha256 and digest.hexdigest() != spec.sha256:
            raise UserError(f"{spec.name} from {url} has sha256 {digest.hexdigest()}, expected {spec.sha256}; "
                            "the download is corrupt or not the official file, nothing was saved")
        check_csv_head(bytes(head), spec.name, url)

    created = _missing_top(dest.parent)
    try:
        write_atomic(dest, stream)
    except BaseException as exc:
        if created is not None:  # no empty destination folder is left after a failed download
            shutil.rmtree(created, ignore_errors=True)
        if isinstance(exc, OSError) and exc.errno in NO_ROOM:
            raise ResourceError(f"the disk is full writing {dest}; free space on that disk or choose another "
                                "--dest") from None
        if isinstance(exc, OSError):
            raise UserError(f"cannot write {dest} ({exc.strerror or exc}); pass a writable --dest or set "
                            "TSPRUNE_EDGE_DATA_DIR") from None
        raise
    return dest


def _missing_top(folder: Path) -> Path | None:
    """The outermost folder of `folder` that does not exist yet (None: it exists)."""
    folder = Path(folder).absolute()
    if folder.exists():
        return None
    while not folder.parent.exists():
        folder = folder.parent
    return folder
