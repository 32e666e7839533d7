"""Every bad input gets one line naming the problem, exit code 2, no traceback and no output files."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

GOOD_HEADER = "date,a,OT\n"


def _csv(tmp_path: Path, text: str) -> str:
    path = tmp_path / "input.csv"
    path.write_text(text)
    return str(path)


def _rows(n: int) -> str:
    return "".join(f"2020-01-{1 + i // 24:02d} {i % 24:02d}:00:00,{i},{2 * i}\n" for i in range(n))


def assert_one_line_error(result, *fragments: str) -> None:
    assert result.code == 2, (result.code, result.err)
    assert result.err.startswith("error: ") and result.err.count("\n") == 1, result.err
    assert "Traceback" not in result.err
    for fragment in fragments:
        assert fragment in result.err, (fragment, result.err)


def train(cli, tmp_path: Path, *args: str):
    out = tmp_path / "out"
    result = cli("train", "--model", "patchtst", "--epochs", "1", "--out", str(out), *args)
    assert not out.exists(), "a failed command must not leave output behind"
    return result


def test_missing_file(cli, tmp_path):
    assert_one_line_error(train(cli, tmp_path, "--data", str(tmp_path / "absent.csv")), "absent.csv", "no such file")


def test_header_without_date(cli, tmp_path):
    path = _csv(tmp_path, "time,a,OT\n" + _rows(10))
    assert_one_line_error(train(cli, tmp_path, "--data", path), "first column must be `date`", "'time'")


def test_non_numeric_cell(cli, tmp_path):
    path = _csv(tmp_path, GOOD_HEADER + _rows(5) + "2020-01-02 00:00:00,abc,1\n")
    assert_one_line_error(train(cli, tmp_path, "--data", path), "line 7", "'a'", "'abc' is not a number")


@pytest.mark.parametrize("cell", ["", "nan", "NaN", "inf"])
def test_missing_or_nan_cell(cli, tmp_path, cell):
    path = _csv(tmp_path, GOOD_HEADER + _rows(3) + f"2020-01-02 00:00:00,1,{cell}\n")
    assert_one_line_error(train(cli, tmp_path, "--data", path), "line 5", "'OT'")


def test_too_few_rows_for_the_windows(cli, tmp_path):
    path = _csv(tmp_path, GOOD_HEADER + _rows(200))
    assert_one_line_error(train(cli, tmp_path, "--data", path), "too few rows", "seq_len 96", "pred_len 96")


def test_unknown_dataset_name(cli, tmp_path):
    assert_one_line_error(train(cli, tmp_path, "--data", "ETTh9"), "unknown dataset 'ETTh9'", "ETTh1")


def test_unknown_model_name(cli, tmp_path):
    out = tmp_path / "out"
    result = cli("train", "--model", "gpt9", "--out", str(out))
    assert_one_line_error(result, "unknown model 'gpt9'", "patchtst", "transformer")
    assert not out.exists()


@pytest.mark.parametrize("pred_len", ["0", "-5"])
def test_non_positive_pred_len(cli, tmp_path, pred_len):
    assert_one_line_error(train(cli, tmp_path, "--pred-len", pred_len), "--pred-len must be at least 1")


def test_unknown_preset(cli, tmp_path):
    assert_one_line_error(train(cli, tmp_path, "--preset", "huge"), "no preset 'huge'", "small")


def test_unwritable_output(cli, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    result = cli("train", "--model", "patchtst", "--epochs", "1", "--out", str(blocker / "sub"))
    assert_one_line_error(result, "cannot write")


@pytest.mark.parametrize("kind", ["foreign_dict", "random_bytes", "text", "missing"])
def test_checkpoint_that_is_not_ours(cli, tmp_path, kind):
    path = tmp_path / "model.pt"
    if kind == "foreign_dict":
        torch.save({"state_dict": {"w": torch.zeros(2)}}, path)
    elif kind == "random_bytes":
        path.write_bytes(bytes(range(256)) * 4)
    elif kind == "text":
        path.write_text("hello")
    result = cli("evaluate", str(path))
    assert_one_line_error(result, str(path))
    assert "checkpoint" in result.err
    assert not (tmp_path / "evaluation-test.json").exists()


def test_pickled_code_is_refused(cli, tmp_path):
    """weights_only=True: a checkpoint that would run code on load is refused, not executed."""
    path = tmp_path / "model.pt"
    torch.save({"format": "tsprune-edge/checkpoint", "payload": Path("x")}, path)
    assert_one_line_error(cli("evaluate", str(path)), "is not a tsprune-edge checkpoint")
