"""The bad-input contract as an assertion: exit 2, one `error:` line holding the expected words, no traceback."""

from __future__ import annotations


def assert_one_line_error(result, *fragments: str) -> str:
    """`result` (the `cli` fixture's) refused in one line naming every fragment; returns that line."""
    assert result.code == 2, (result.code, result.err)
    assert result.err.startswith("error: ") and result.err.count("\n") == 1, result.err
    assert "Traceback" not in result.err + result.out, result.err
    for fragment in fragments:
        assert fragment in result.err, (fragment, result.err)
    return result.err.rstrip("\n")
