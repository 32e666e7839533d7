"""Checks every command runs before any expensive work: numeric ranges, and output paths that are really writable,
are not an input, and hold nothing of the user's that would be overwritten without `--force`.

It also remembers the folders and files this run created, so that an interrupted or failed run removes them (and
only them), and where it writes, so that a full disk is reported against the option that chose the place.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

from tsprune_edge.errors import UserError

SEED_MAX = 2**32 - 1  # numpy's seed range; torch takes more, numpy does not
_SYSTEM_ROOTS = (Path("/proc"), Path("/sys"), Path("/dev"))

# Folders and files this run created (and whether a finished file in them is kept on Ctrl-C): removed when the run
# is interrupted or fails.
_created: list[tuple[Path, bool]] = []
# Where this run writes, and the option that chose the place: a write that fails names that option.
_outputs: list[tuple[Path, str]] = []


def number(option: str, value: float | int | None, low: float | None = None, high: float | None = None, *,
           low_open: bool = False, high_open: bool = False) -> None:
    """Refuse nan, inf and values outside [low, high] (or the open ends), naming the option and its range."""
    if value is None:
        return
    if isinstance(value, float) and not math.isfinite(value):
        raise UserError(f"{option} must be a finite number, got {value}")
    below = low is not None and (value <= low if low_open else value < low)
    above = high is not None and (value >= high if high_open else value > high)
    if below or above:
        left = "" if low is None else ("(" if low_open else "[") + f"{low:g}"
        right = "" if high is None else f"{high:g}" + (")" if high_open else "]")
        where = (f"in {left}, {right}" if low is not None and high is not None
                 else f"{'above' if low_open else 'at least'} {low:g}" if low is not None
                 else f"{'below' if high_open else 'at most'} {high:g}")
        raise UserError(f"{option} must be {where}, got {value:g}")


def seed(value: int) -> None:
    number("--seed", value, 0, SEED_MAX)


def _resolved(path: Path) -> Path:
    return Path(os.path.realpath(Path(path).expanduser()))


def _existing_ancestor(path: Path) -> Path:
    probe = _resolved(path)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return probe


def writable_dir(directory: Path, option: str = "--out") -> None:
    """`directory` can be created and written: tried with a probe file in the nearest folder that exists."""
    directory = Path(directory)
    real = _resolved(directory)
    for root in _SYSTEM_ROOTS:
        if real == root or root in real.parents:
            raise UserError(f"cannot write to {directory}: {root} is a system folder; choose another {option}")
    if real.exists() and not real.is_dir():
        raise UserError(f"cannot write to {directory}: it is a file, not a folder; choose another {option}")
    ancestor = _existing_ancestor(real)
    if not ancestor.is_dir():
        raise UserError(f"cannot write to {directory}: {ancestor} is a file, not a folder; choose another {option}")
    try:
        fd, name = tempfile.mkstemp(prefix=".tsprune-edge-probe-", dir=ancestor)
        os.close(fd)
        os.unlink(name)
    except OSError as exc:
        raise UserError(f"cannot write to {directory} ({ancestor}: {exc.strerror or exc}); "
                        f"choose another {option}") from None


def writable_file(path: Path, option: str = "--out") -> None:
    """`path` can be written as a file: not an existing folder, in a writable folder."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path} is a folder; {option} takes a file name, for example {path / 'evaluation.json'}")
    writable_dir(path.parent, option)


def not_an_input(outputs: Iterable[Path], inputs: Iterable[Path | None], option: str = "--out",
                 replaced: bool = True) -> None:
    """No output is an input or lies inside an input folder; a `replaced` output (a file written over, a folder
    swapped for a new one) holds no input either: the tool never writes over what it reads."""
    ins = [_resolved(p) for p in inputs if p is not None and Path(p).exists()]  # a dataset name is no path
    for out in outputs:
        real = _resolved(out)
        for inp in ins:
            if real == inp or inp in real.parents or (replaced and real in inp.parents):
                raise UserError(f"{option} {out} would write over the input {inp}; choose another {option}")


def no_overwrite(files: Iterable[Path], force: bool, option: str = "--out") -> None:
    """Refuse to replace a file or folder that exists already unless the user passed --force."""
    if force:
        return
    for path in files:
        if Path(path).exists():
            raise UserError(f"{path} exists already; pass --force to overwrite it, or choose another {option}")


def output_dir(directory: Path, *, writes: Iterable[str] = (), inputs: Iterable[Path | None] = (),
               force: bool = False, option: str = "--out", keep_finished: bool = False) -> None:
    """The checks for a command that writes the files `writes` into `directory`; remembers the folder if this run
    will create it."""
    directory = Path(directory)
    writable_dir(directory, option)
    targets = [directory / name for name in writes]
    not_an_input([directory], inputs, option, replaced=False)
    not_an_input(targets, inputs, option)
    no_overwrite(targets, force, option)
    remember_created(directory, keep_finished)
    remember_output(directory, option)
    if not keep_finished:  # a run that keeps finished work (bench, fit, sweep) manages its own files
        for target in targets:
            remember_created(target, keep_finished)


def output_file(path: Path, *, inputs: Iterable[Path | None] = (), force: bool = False,
                option: str = "--out") -> None:
    path = Path(path)
    writable_file(path, option)
    not_an_input([path], inputs, option)
    no_overwrite([path], force, option)
    remember_created(path.parent, keep_finished=False)
    remember_created(path, keep_finished=False)
    remember_output(path.parent, option)


def remember_created(path: Path, keep_finished: bool) -> None:
    """Note the outermost folder of `path` (or `path` itself) that does not exist yet: a run that is interrupted or
    fails removes it. What exists now is never noted, so never removed."""
    real = _resolved(path)
    if os.path.lexists(real):
        return
    top = real
    while not os.path.lexists(top.parent):
        top = top.parent
    _created.append((top, keep_finished))


def remember_output(path: Path, option: str) -> None:
    _outputs.append((_resolved(path), option))


def output_option(path: str | os.PathLike | None) -> str:
    """The option that chose where `path` is written (the innermost output holding it); --out when none does."""
    if path is None:
        return _outputs[0][1] if _outputs else "--out"
    real = _resolved(Path(path))
    holding = [(len(out.parts), option) for out, option in _outputs if out == real or out in real.parents]
    return max(holding)[1] if holding else "--out"


def forget_created() -> None:
    _created.clear()
    _outputs.clear()


def remove_created() -> list[Path]:
    """On Ctrl-C or a failure: remove the folders and files this run created; where finished work is kept (a
    bench's measured rounds, a sweep's cells), only folders still without a file."""
    removed = []
    for path, keep_finished in reversed(_created):
        if path.is_symlink() or path.is_file():
            path.unlink(missing_ok=True)
            removed.append(path)
            continue
        if not path.is_dir():
            continue
        if keep_finished and any(p.is_file() for p in path.rglob("*")):
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    _created.clear()
    return removed


def model_fits(model: str, preset: str, seq_len: int | None, label_len: int | None, pred_len: int,
               data: str | None = None, strict_dates: bool = False) -> None:
    """Check the window against the rows of `data`, then build the model at these window sizes and run one tiny
    window through it: a seq_len shorter than a patch or a segment, or a horizon far beyond the data, fails here in
    seconds, not after training (nor by building a model that exhausts memory)."""
    import torch

    from tsprune_edge.data.forecast import WindowSpec, check_length
    from tsprune_edge.errors import from_environment
    from tsprune_edge.models import create_model, resolve_config

    number("--pred-len", pred_len, 1)
    number("--seq-len", seq_len, 1)
    number("--label-len", label_len, 0)
    config = resolve_config(model, preset, seq_len=seq_len, label_len=label_len, pred_len=pred_len)
    if config.label_len > config.seq_len:
        raise UserError(f"--label-len {config.label_len} is longer than --seq-len {config.seq_len}; the decoder "
                        "starts inside the history")
    if data is not None:
        check_length(data, WindowSpec(config.seq_len, config.label_len, pred_len), strict_dates)
    preset_config = resolve_config(model, preset)
    try:
        net = create_model(model, preset, seq_len=config.seq_len, label_len=config.label_len, pred_len=pred_len)
        if (config.seq_len, config.label_len, pred_len) != (preset_config.seq_len, preset_config.label_len,
                                                            preset_config.pred_len):  # the preset's are tested
            calendar = torch.zeros(1, config.seq_len + pred_len, len(config.calendar_features))
            with torch.no_grad():
                net.eval()(torch.zeros(1, config.seq_len, config.enc_in), calendar)
    except (ValueError, RuntimeError, IndexError, AssertionError, MemoryError) as exc:
        fault = from_environment(exc, output_option)
        if fault is not None:  # no memory for these sizes: the machine's limit, not a window the model refuses
            raise fault from None
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{model} cannot take seq_len {config.seq_len}, label_len {config.label_len}, pred_len "
                        f"{pred_len} ({first[:120]}); choose other window sizes") from None


def bundle_folders(out: Path, names: Iterable[str], force: bool, option: str = "--out") -> None:
    """Export swaps OUT/<variant> for the new bundle: allowed over an earlier bundle with --force, never over a
    folder that is not a bundle (checkpoints, results)."""
    for name in names:
        folder = Path(out) / name
        if not folder.exists():
            remember_created(folder, keep_finished=False)  # a half-made bundle is not left looking finished
            continue
        if not (folder / "manifest.json").is_file():
            raise UserError(f"{folder} exists and is not an export bundle; export would replace it: choose another "
                            f"{option}")
        if not force:
            raise UserError(f"{folder} holds a bundle already; pass --force to replace it, or choose another {option}")


def threads(values: Iterable[int] | None, option: str = "--threads") -> None:
    for value in values or ():
        number(option, value, 1, 1024)


def read_back(read, source: Path):
    """Run `read` over files the tool wrote earlier (bench.json, state.json, raw/*.json): a truncated file or one
    with the wrong types is one line naming the folder, not a traceback from deep inside the report."""
    try:
        return read()
    except (ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
        what = f"{type(exc).__name__}: {str(exc).splitlines()[0][:100]}" if str(exc).strip() else type(exc).__name__
        raise UserError(f"{source}: a result file there is damaged or not from this tsprune-edge ({what}); "
                        "run `tsprune-edge bench` again for that folder") from None


def sweep_folder(out: Path, spec_file: str) -> None:
    """A sweep resumes in its own folder; a folder that holds other files is not taken over."""
    out = Path(out)
    if out.is_dir() and any(out.iterdir()) and not (out / spec_file).is_file():
        raise UserError(f"{out} holds other files and no {spec_file}: it is not a sweep folder; choose another --out")


def bundle_folder(artifacts: Path) -> None:
    """Every folder under --artifacts is a bundle: one without a manifest is named, not skipped without a word."""
    artifacts = Path(artifacts)
    if not artifacts.exists():
        raise UserError(f"no export bundles under {artifacts} (no such folder); run `tsprune-edge export` first or "
                        "pass --artifacts")
    if not artifacts.is_dir():
        raise UserError(f"--artifacts {artifacts} is not a folder; pass the folder `tsprune-edge export --out` wrote")
    for folder in sorted(p for p in artifacts.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if not (folder / "manifest.json").is_file():
            raise UserError(f"{folder} is not an export bundle (no manifest.json); remove it or re-export it")
        _verify_here(folder)


def _verify_here(folder: Path) -> None:
    """Check a bundle's files against its manifest on this machine, so that a bad local bundle is named as such
    and not reported later as a copy corrupted on the way to the board."""
    from tsprune_edge.devices.agent import verify_bundle
    from tsprune_edge.export.manifest import load_manifest

    load_manifest(folder)  # not a bundle this version reads: its own line
    try:
        report = verify_bundle(str(folder))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise UserError(f"{folder}/manifest.json does not list its files as a bundle does ({type(exc).__name__}); "
                        "re-export it") from None
    bad = [f["file"] for f in report["files"] if not f["ok"]]
    if bad:
        raise UserError(f"{folder}: {', '.join(bad)} missing or not what manifest.json records (sha256), here "
                        "before any copy; re-export it")


def apart(out: Path, runs: Path, bundles: Iterable[str], checkpoints: Iterable[str]) -> None:
    """Export's bundles must not land on the folders its own checkpoints go to (a bundle replaces its folder)."""
    shared = {_resolved(Path(out) / n) for n in bundles} & {_resolved(Path(runs) / n) for n in checkpoints}
    if shared:
        raise UserError(f"--out {out} and --runs {runs} would share {sorted(shared)[0]}: the bundle would replace "
                        "the checkpoints; choose different folders")


def measured_run(run: Path) -> None:
    """A bench run the report can judge: a dense reference was measured if any variant was (every verdict is
    against dense), and every latency a round recorded is a finite time above 0. Checked before any row is made, so
    that such a run is one line, not a table of dashes or a division by zero."""
    from tsprune_edge.report.verdict import load_run
    from tsprune_edge.variants import DENSE, PROBE_VARIANT

    summary = load_run(run)
    bundles = {item["bundle"] for item in summary["items"]}
    if bundles - {DENSE, PROBE_VARIANT} and DENSE not in bundles:
        raise UserError(f"{run} holds no measurement of the {DENSE} bundle, the reference each variant is judged "
                        f"against; bench again with OUT/{DENSE} (from `tsprune-edge export`) in --artifacts")
    for item in summary["items"]:
        for path in sorted((Path(run) / "raw").glob(f"{item['id']}__r*.json")):
            result = json.loads(path.read_text())
            if "error" in result or "latency" not in result:
                continue  # a failed round: the report flags it
            listed = result.get("latencies_s")
            values = [result["latency"]["p50"], *(listed if isinstance(listed, list) else [])]
            bad = next((v for v in values if isinstance(v, bool) or not isinstance(v, (int, float))
                        or not math.isfinite(v) or v <= 0), None)
            if bad is not None:
                raise UserError(f"{path}: a latency of {bad!r} s is not a measurement (each is a time above 0); "
                                f"the file is damaged: run `tsprune-edge bench` again for {run}")
