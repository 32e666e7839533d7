"""The `tsprune-edge` command line: thin commands over library functions.

`main` is the one place where failures become one line: a ToolError prints `error: ...` and exits with its kind's
code (tsprune_edge/errors.py), a parsing error exits 2, a full disk or exhausted memory exits 4 and a file that
cannot be written exits 2 (`errors.from_environment`), Ctrl-C prints one line, removes what the interrupted run
created and exits 130. Library log noise (absl, oneDNN, TF/LiteRT C++ logs, Python warnings) is silenced unless
`--verbose` comes first.
"""

from __future__ import annotations

import signal
import sys

from tsprune_edge.cli.quiet import native_logs_to_file, quiet_libraries

quiet_libraries(verbose="--verbose" in sys.argv[1:2])  # before torch or TF are imported: they read it at import

import typer  # noqa: E402
from typer._click.exceptions import ClickException, NoArgsIsHelpError  # noqa: E402 (typer vendors click)

from tsprune_edge.cli import (  # noqa: E402
    bench_cmd,
    data_cmd,
    devices_cmd,
    export_cmd,
    fit_cmd,
    guards,  # noqa: E402
    model_cmd,
    pipeline_cmd,
    prune_cmd,
    report_cmd,
    sweep_cmd,
)
from tsprune_edge.errors import ToolError, from_environment  # noqa: E402

app = typer.Typer(
    name="tsprune-edge",
    help="Train, prune, export and benchmark Transformer forecasters on edge boards.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,  # never print locals (hosts, keys) in a traceback
    add_completion=False,
)


@app.callback()
def _root(verbose: bool = typer.Option(False, "--verbose", help="Show the libraries' own log lines and warnings "
                                       "(give it before the command); without it they go to "
                                       "$TMPDIR/tsprune-edge-<uid>/native.log.")) -> None:
    """Train, prune, export and benchmark Transformer forecasters on edge boards."""


app.add_typer(data_cmd.app, name="data")
app.command("train")(model_cmd.train_command)
app.command("evaluate")(model_cmd.evaluate_command)
app.command("models")(model_cmd.models_command)
app.command("prune")(prune_cmd.prune_command)
app.command("export")(export_cmd.export_command)
app.command("bench")(bench_cmd.bench_command)
app.command("fit")(fit_cmd.fit_command)
app.add_typer(devices_cmd.app, name="devices")
app.command("report")(report_cmd.report_command)
app.command("sweep")(sweep_cmd.sweep_command)
app.command("pipeline")(pipeline_cmd.pipeline_command)


class Interrupted(BaseException):
    """Ctrl-C, raised by our own handler: typer turns a KeyboardInterrupt into a silent exit 130 before we see it."""


def _interrupt(signum, frame) -> None:
    raise Interrupted()


def one_line(text: str) -> str:
    return " ".join(str(text).split())


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else list(argv)
    if "--verbose" in args[:1]:
        quiet_libraries(verbose=True)
    guards.forget_created()
    try:
        previous = signal.signal(signal.SIGINT, _interrupt)
    except ValueError:  # not the main thread: Ctrl-C is not ours to handle
        previous = None
    try:
        with native_logs_to_file(verbose="--verbose" in args[:1]):
            code = app(args=args, prog_name="tsprune-edge", standalone_mode=False)
    except ToolError as exc:  # each kind its exit code: 2 bad input, 3 a board or runtime failed, 4 out of room
        guards.remove_created()  # nothing half-written stays
        _fail(one_line(exc), exc.exit_code)
    except NoArgsIsHelpError as exc:
        exc.show()  # a bare command: its help, as before
        sys.exit(exc.exit_code)
    except ClickException as exc:
        hint = f"; see `{exc.ctx.command_path} --help`" if getattr(exc, "ctx", None) else ""
        _fail(one_line(exc.format_message()).rstrip(".") + hint, 2)
    except Exception as exc:  # a full disk, no memory (MemoryError is an Exception), a file we may not write
        fault = from_environment(exc, guards.output_option)
        if fault is None:
            raise  # a bug: its traceback is the report
        guards.remove_created()  # nothing half-written stays
        _fail(one_line(fault), fault.exit_code)
    except (Interrupted, KeyboardInterrupt, typer.Abort):
        if previous is not None:
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the clean-up short
        removed = guards.remove_created()
        kept = f"; removed {', '.join(map(str, removed))}" if removed else ""
        _fail(f"interrupted{kept}; finished and measured files are kept", 130)
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
        guards.forget_created()
    if isinstance(code, int) and code:
        sys.exit(code)


def _fail(message: str, code: int) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(code)
