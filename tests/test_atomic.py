"""Atomic writes: whole files or none, with the permissions any other file would get."""

from __future__ import annotations

import os

import pytest

from tsprune_edge.atomic import write_atomic, write_json_atomic


def test_a_written_file_has_the_umask_permissions_not_mkstemps_0600(tmp_path):
    path = tmp_path / "report.json"
    write_json_atomic(path, {"rows": []})
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
    assert path.read_text() == '{\n  "rows": []\n}\n'


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "model.pt"
    path.write_bytes(b"old")

    def fail(handle):
        handle.write(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomic(path, fail)
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]
