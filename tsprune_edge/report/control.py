"""The A/A check of `bench --control`: dense against a byte-different copy of itself, judged like any variant. A
run that cannot call a model EQUIVALENT to itself cannot be trusted to call a pruned model faster; this module
says so, once, where the answer is given (the answer lines) and in report.json."""

from __future__ import annotations

from tsprune_edge.report.stats import EQUIVALENT
from tsprune_edge.variants import CONTROL

FIX = ("rerun the bench with the board otherwise idle (close other programs and benches; add --cooldown or more "
       "--rounds)")


def setting(row: dict) -> str:
    """`onnx (onnxruntime 1.20.1), 1 thread`: what the answer lines name a measured setting by."""
    return f"{row['format']} ({row['runtime']}), {row['threads']} thread{'s' if row['threads'] != 1 else ''}"


def control_warnings(rows: list[dict]) -> list[str]:
    """One line per control not judged EQUIVALENT against its dense."""
    return [f"warning: {setting(row)}: control copy of dense judged {row.get('verdict', 'NOT JUDGED: no dense')}: "
            f"the run's comparisons are not trustworthy; {FIX}"
            for row in rows if row["variant"] == CONTROL and row.get("verdict") != EQUIVALENT]


def control_check(rows: list[dict]) -> dict:
    """report.json's run-level field: whether a control ran, whether every control came out EQUIVALENT (None
    when none ran), each control's verdict, and the warnings."""
    controls = [row for row in rows if row["variant"] == CONTROL]
    return {"measured": bool(controls),
            "trustworthy": all(row.get("verdict") == EQUIVALENT for row in controls) if controls else None,
            "verdicts": [{"run": row["run"], "format": row["format"], "runtime": row["runtime"],
                          "threads": row["threads"], "verdict": row.get("verdict")} for row in controls],
            "warnings": control_warnings(rows)}
