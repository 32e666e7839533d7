"""Where compute cells run: local worker processes by default, or tasks on an existing Ray cluster.

Both take a cell with its input bytes and hand back `run_cell`'s result; the driver never cares which.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import socket
from typing import Protocol

from tsprune_edge.errors import UserError
from tsprune_edge.sweep.cells import run_cell
from tsprune_edge.sweep.spec import Cell


class Executor(Protocol):
    name: str

    def submit(self, spec_record: dict, cell: Cell, inputs: dict[str, bytes]) -> object: ...

    def wait_any(self, pending: list[object]) -> list[tuple[object, dict]]: ...

    def close(self, interrupted: bool = False) -> None: ...


class LocalExecutor:
    """Fresh `spawn` processes (no forked torch state), one torch thread each."""

    def __init__(self, workers: int) -> None:
        self.name = f"{workers} local worker process{'es' if workers > 1 else ''}"
        self._pool = cf.ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))

    def submit(self, spec_record: dict, cell: Cell, inputs: dict[str, bytes]) -> cf.Future:
        return self._pool.submit(run_cell, spec_record, cell, inputs)

    def wait_any(self, pending: list[cf.Future]) -> list[tuple[cf.Future, dict]]:
        done, _ = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
        return [(future, future.result()) for future in done]

    def close(self, interrupted: bool = False) -> None:
        if interrupted:  # a cell in progress is lost anyway: stop its worker now rather than wait minutes
            for child in multiprocessing.active_children():
                child.terminate()
        self._pool.shutdown(wait=not interrupted, cancel_futures=True)


RAY_CONNECT_TIMEOUT_S = 15.0
# HTTP/2 connection preface and an empty SETTINGS frame: Ray's GCS is a gRPC server, which must answer in kind.
_HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])


def check_ray_address(address: str, timeout: float = RAY_CONNECT_TIMEOUT_S) -> None:
    """Something must answer at host:port before Ray is asked to join it: Ray itself retries a dead address for
    minutes without a word."""
    if address == "auto":
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise UserError(f"--ray takes the cluster's HOST:PORT (for example 10.0.0.5:6379), got {address!r}")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout) as conn:
            conn.sendall(_HTTP2_PREFACE)
            reply = conn.recv(9)
    except OSError as exc:
        reason = "no answer" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        raise UserError(f"no Ray cluster answers at {address} ({reason}; waited at most {timeout:g} s); start it "
                        "with `ray start --head` or pass its address") from None
    if len(reply) < 4 or reply[3] != 0x4:  # a gRPC server answers the preface with a SETTINGS frame
        raise UserError(f"something listens at {address} but it is not a Ray cluster (no gRPC answer); pass the "
                        "address `ray start --head` printed")


class RayExecutor:
    """Tasks on a Ray cluster that is already running (`ray start --head` or a managed one): one CPU per cell.
    Every node needs tsprune-edge installed and the dataset in its data folder; the files come back to the
    driver through Ray's object store."""

    def __init__(self, address: str) -> None:
        check_ray_address(address)
        for key in ("RAY_gcs_server_request_timeout_seconds", "RAY_gcs_rpc_server_reconnect_timeout_s"):
            os.environ.setdefault(key, str(int(RAY_CONNECT_TIMEOUT_S)))  # read at import: no minutes-long retries
        try:
            import ray
        except ImportError:
            raise UserError("--ray needs Ray: pip install 'tsprune-edge[ray]'") from None
        try:
            ray.init(address=address, logging_level="ERROR", log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise UserError(f"cannot join the Ray cluster at {address}: {str(exc).splitlines()[0]}; start it with "
                            "`ray start --head` or pass its address") from None
        self._ray = ray
        self._task = ray.remote(num_cpus=1, max_retries=0)(run_cell)
        self.name = f"Ray cluster at {address} ({int(ray.cluster_resources().get('CPU', 0))} CPUs)"

    def submit(self, spec_record: dict, cell: Cell, inputs: dict[str, bytes]) -> object:
        return self._task.remote(spec_record, cell, inputs)

    def wait_any(self, pending: list[object]) -> list[tuple[object, dict]]:
        done, _ = self._ray.wait(pending, num_returns=1)
        return [(ref, self._ray.get(ref)) for ref in done]

    def close(self, interrupted: bool = False) -> None:
        self._ray.shutdown()
