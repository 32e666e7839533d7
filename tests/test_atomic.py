"""Atomic writes: whole files or none, with the permissions any other file would get."""

from __future__ import annotations

import os

import pytest

from tsprune_edge.atomic import replace_finished, scratch_beside, write_atomic, write_json_atomic


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


def test_a_file_from_a_path_writer_gets_the_finished_permissions_and_the_scratch_goes_away(tmp_path):
    umask = os.umask(0)
    os.umask(umask)
    with scratch_beside(tmp_path / "model.tflite") as tmp:
        assert tmp.parent == tmp_path
        tmp.unlink()  # a converter that recreates its output file with its own mode
        tmp.write_bytes(b"kept")
        tmp.chmod(0o755)
        replace_finished(tmp, tmp_path / "model.tflite")
    with scratch_beside(tmp_path / "model.onnx") as tmp:
        tmp.write_bytes(b"abandoned")
    assert [p.name for p in tmp_path.iterdir()] == ["model.tflite"]
    assert (tmp_path / "model.tflite").stat().st_mode & 0o777 == 0o666 & ~umask
