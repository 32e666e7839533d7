"""The leaderboard's durable record: what a later session needs to go on, kept where git keeps it.

The leaderboard takes far longer than one session, and each session may get a fresh machine whose ignored folders
(runs/) are gone: ETTh1's 133 cell records, kept only in runs/, were lost that way (2026-12-07). So the record folder
(benchmarks/results/leaderboard-cells by default) is tracked and holds:
- every cell record, <cell>.json (small; a failed cell's <cell>.error.json, a replaced one's *.superseded.json);
- checkpoints/<path under the work folder>: exactly the checkpoints later cells still need: each exported seed's model
  per variant (re-exported before its dataset's bench, which must run on one machine in one session) and a dense
  model whose structured or fit cell is not settled yet. A checkpoint no cell needs any more is removed from it.
Bundles, bench runs and the fit latency cache stay in the work folder: they are remade on the machine that measures.
Pure file handling: no torch.
"""

from __future__ import annotations

import filecmp
import json
import shutil
import time
from pathlib import Path

KEPT = "checkpoints"
SETTLED = ("ok", "n/a")


def cell_id(kind: str, dataset: str, model: str, lookback: int, seed: int | None = None) -> str:
    """A cell's file name stem, e.g. dense--ETTh1--dlinear--L96--s2021."""
    return "--".join([kind, dataset, model, f"L{lookback}", *([f"s{seed}"] if seed is not None else [])])


def parse_cell(name: str) -> tuple[str, str, str, int, int | None]:
    """The inverse of `cell_id`: (kind, dataset, model, lookback, seed or None)."""
    kind, dataset, model, lookback, *seed = name.split("--")
    return kind, dataset, model, int(lookback.removeprefix("L")), int(seed[0].removeprefix("s")) if seed else None


def is_cell_name(name: str) -> bool:
    """Whether `name` is a stem `cell_id` writes (a stray file in the record folder is not)."""
    try:
        return cell_id(*parse_cell(name)) == name
    except ValueError:
        return False


def stored_path(work: Path, path: Path) -> str:
    """How a cell records a checkpoint: relative to the work folder, so the record holds on another machine."""
    return str(Path(path).resolve().relative_to(work.resolve()))


def checkpoint_of(work: Path, record: dict) -> Path:
    """Where a cell's checkpoint is now (a record written before paths were relative names it absolutely)."""
    path = Path(record["checkpoint"])
    return path if path.is_absolute() else work / path


def needed_checkpoints(cells: dict[str, dict], pruned: tuple[str, ...]) -> set[str]:
    """The checkpoints (as recorded) later cells need: each exported variant's source seed, and each dense model
    one of whose `pruned` cells (same dataset, model, lookback and seed) is not settled."""
    needed = set()
    for name, record in cells.items():
        if record.get("status") != "ok":
            continue
        kind, dataset, model, lookback, seed = parse_cell(name)
        if kind.startswith("export-"):
            source = cells.get(cell_id(kind.removeprefix("export-"), dataset, model, lookback, record["seed"]))
            if source and source.get("checkpoint"):
                needed.add(source["checkpoint"])
        elif kind == "dense" and any((cells.get(cell_id(variant, dataset, model, lookback, seed)) or {}).get(
                "status") not in SETTLED for variant in pruned):
            needed.add(record["checkpoint"])
    return needed


def keep(work: Path, record: Path, needed: set[str]) -> list[str]:
    """Copy each needed checkpoint present in the work folder into the record (where it is missing or differs) and
    remove the kept ones no cell needs; returns the needed checkpoints found in neither place."""
    kept, missing = record / KEPT, []
    for name in sorted(needed):
        source, target = work / name, kept / name
        if source.is_file():
            if not target.is_file() or not filecmp.cmp(source, target, shallow=False):
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, target.with_name(target.name + ".partial"))
                target.with_name(target.name + ".partial").replace(target)
        elif not target.is_file():
            missing.append(name)
    for path in sorted(kept.rglob("*"), reverse=True):  # deepest first, so emptied folders go too
        if path.is_file() and str(path.relative_to(kept)) not in needed:
            path.unlink()
        elif path.is_dir() and not any(path.iterdir()):
            path.rmdir()
    return missing


def restore(work: Path, record: Path) -> int:
    """Put every kept checkpoint missing from the work folder back there; returns how many were restored."""
    restored = 0
    for source in sorted((record / KEPT).rglob("*.pt")):
        target = work / source.relative_to(record / KEPT)
        if not target.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
            restored += 1
    return restored


def supersede(cells: Path, name: str) -> Path:
    """Set a finished cell's record aside (kept, never read as done) so the cell is computed again."""
    moved = cells / f"{name}.{int(time.time())}.superseded.json"
    (cells / f"{name}.json").rename(moved)
    return moved


def carried_sections(sections: list[dict], previous: dict | None) -> list[dict]:
    """Each section with no cell record here but computed in the previous results is taken from them as it was,
    marked with where it came from (its cells' records were not kept): never recomputed, never dropped."""
    earlier = {(s["dataset"], s["lookback"]): s for s in (previous or {}).get("sections", [])
               if s["rows"] and (s["progress"]["settled"] or s.get("carried"))}
    out = []
    for section in sections:
        before = earlier.get((section["dataset"], section["lookback"]))
        if section["progress"]["settled"] == 0 and not section["rows"] and before:
            section = {**before, "carried": before.get("carried") or {
                "date": previous["date"], "commit": previous["commit"], "cell_commits": previous["cell_commits"],
                "machine": previous["machine"]}}
        out.append(section)
    return out


def read_previous(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None
