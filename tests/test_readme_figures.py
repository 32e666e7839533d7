"""Every figure README quotes from a committed result file matches that file, rounded as printed.

A quoted figure is followed by a marker naming its source: `1.39x<!-- figure benchmarks/results/main_job.json
variants/structured-0.5/onnx/speedup {:.2f}x -->`. The path walks the JSON, segments split by `/` (keys such as
`structured-0.5` hold dots): `key` goes into a dict (a number into a list), `*` takes every value, `[k=v,...]`
keeps the dicts of a list that have those values (`%20` for a space); after `|`, `min`, `max`, `count`, `/N` and
`*N` reduce, count or scale what was found. The README text just before the marker must end with the format
applied to the value. When a result file changes (a re-run, another helper's new coverage), this test names every
figure to re-point or re-quote."""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[1]
MARKER = re.compile(r"<!-- figure (\S+) (\S+) (\S+) -->")


def resolve(document: object, path: str) -> object:
    """The value `path` names in `document` (the grammar in the module docstring)."""
    walk, _, operations = path.partition("|")
    found = [document]
    for segment in walk.split("/"):
        if segment == "*":
            found = [v for f in found for v in (f.values() if isinstance(f, dict) else f)]
        elif segment.startswith("["):
            wanted = {k: unquote(v) for k, v in (pair.split("=", 1) for pair in segment[1:-1].split(","))}
            found = [row for f in found for row in f if all(str(row.get(k)) == v for k, v in wanted.items())]
        else:
            found = [f[int(segment)] if isinstance(f, list) else f[segment] for f in found]
    for operation in filter(None, operations.split("|")):
        if operation in ("min", "max"):
            found = [(min if operation == "min" else max)(found)]
        elif operation == "count":
            found = [len(found)]
        elif operation[0] in "/*":
            found = [f / float(operation[1:]) if operation[0] == "/" else f * float(operation[1:]) for f in found]
        else:
            raise ValueError(f"unknown operation {operation!r} in {path}")
    if len(found) != 1:
        raise ValueError(f"{path} names {len(found)} values, not one")
    return found[0]


def quoted_figures(text: str) -> list[tuple[str, str, str, str]]:
    """(text before the marker, file, path, format) for every marker."""
    return [(text[:m.start()], *m.groups()) for m in MARKER.finditer(text)]


README = (ROOT / "README.md").read_text()
FIGURES = quoted_figures(README)


def test_readme_marks_the_figures_of_each_checked_result_file():
    files = {source for _, source, _, _ in FIGURES}
    assert files == {f"benchmarks/results/{name}.json" for name in
                     ("aa_control", "coverage", "fit-issue29/fit", "harness_precision", "leaderboard", "main_job",
                      "study", "train_baselines", "wide_datasets")}
    assert len(FIGURES) == 163
    assert len([f for f in FIGURES if f[1].endswith("main_job.json")]) == 15


def test_readme_quotes_the_main_jobs_answer_verbatim():
    answer = json.loads((ROOT / "benchmarks/results/main_job.json").read_text())["answer"]
    assert answer and "```\n" + "\n".join(answer) + "\n```" in README


@pytest.mark.parametrize(("before", "source", "path", "form"), FIGURES,
                         ids=[f"{s.rsplit('/', 1)[-1]}:{p}" for _, s, p, _ in FIGURES])
def test_each_quoted_figure_matches_its_result_file(before, source, path, form):
    value = resolve(json.loads((ROOT / source).read_text()), path)
    assert before.endswith(form.format(value)), (
        f"README says {before[-40:]!r} where {source} {path} gives {form.format(value)!r}")


def test_the_path_grammar():
    document = {"rows": [{"variant": "a", "format": "onnx", "x": 1.0}, {"variant": "a", "format": "tflite", "x": 3.0}],
                "m": {"p": {"v": 2048}, "q": {"v": 1024}}}
    assert resolve(document, "rows/[variant=a,format=tflite]/x") == 3.0
    assert resolve(document, "rows/*/x|min") == 1.0
    assert resolve(document, "rows/1/format") == "tflite"
    assert resolve(document, "m/*/v|max|/1024") == 2.0
    assert resolve(document, "rows/[variant=a]/*|count") == 6  # the two rows' three values each
    assert resolve(document, "rows/*|count") == 2
    with pytest.raises(ValueError, match="names 2 values"):
        resolve(document, "rows/[variant=a]/x")
    before, source, path, form = quoted_figures("so 1.39x<!-- figure f.json a/b {:.2f}x --> faster")[0]
    assert (before, source, path, form) == ("so 1.39x", "f.json", "a/b", "{:.2f}x")
