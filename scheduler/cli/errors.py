"""lowcarb's one mechanism for command-line mistakes: :class:`UsageError` and the app printing it.

A command, or an option's validating callback, raises ``UsageError(option, problem, fix)``.
:class:`LowcarbGroup`, the group class of every lowcarb typer app, prints it on stderr as one line,
``lowcarb: error: <option>: <problem>; <fix>`` (followed only by the validator's
``file:line:column`` lines when a policy file is at fault), and exits 2. Typer's own parameter
errors (ranges from ``min``/``max``, enum choices, a missing option, an unknown option) are printed
the same way. Any other exception is a bug in lowcarb: one ``lowcarb: internal error:`` line and
exit 1; the traceback is shown only with ``lowcarb --debug`` or ``LOWCARB_DEBUG=1``.

Lives in ``carbon`` because carbon never imports scheduler and the commands of both packages use it.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import typer
from typer.core import TyperCommand, TyperGroup

EXIT_USAGE = 2
EXIT_INTERNAL = 1
DEBUG_ENV = "LOWCARB_DEBUG"
DEBUG_KEY = "lowcarb.debug"
STDOUT = Path("-")  # an output option given as '-' means standard output

# typer >= 0.2x vendors click; its usage-error base class is reached through the public
# BadParameter either way (click.UsageError on older typer)
_TyperUsageError: type[Exception] = next(
    c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError"
)


class UsageError(Exception):
    """A mistake in what the user gave: which option, what is wrong with it, how to fix it.

    ``details`` are extra lines printed as they are (a policy validator's file:line:column lines).
    """

    def __init__(
        self, option: str, problem: str, fix: str = "", *, details: Sequence[str] = ()
    ) -> None:
        self.option = option
        self.problem = problem
        self.fix = fix
        self.details = list(details)
        super().__init__(self.line())

    def line(self) -> str:
        """``<option>: <problem>; <fix>`` on one line (newlines in the parts become spaces)."""
        text = one_line(self.problem)
        if self.option:
            text = f"{self.option}: {text}"
        if self.fix:
            text = f"{text}; {one_line(self.fix)}"
        return text

    def lines(self) -> list[str]:
        return [f"lowcarb: error: {self.line()}", *self.details]


def one_line(text: str) -> str:
    """``text`` on one line: runs of whitespace (newlines too) become one space, no final period
    (a policy error's file:line:column lines join its headline)."""
    return " ".join(text.split()).rstrip(".")


@contextlib.contextmanager
def blame(option: str, *errors: type[Exception], fix: str = "") -> Iterator[None]:
    """Turn ``errors`` raised inside into a :class:`UsageError` naming ``option``.

    For errors whose message already names the file and the fix (a ledger path, a kubeconfig, a
    manifest): the message's first line becomes the problem (not prefixed again when it already
    starts with the option), further lines the details.
    """
    try:
        yield
    except errors as exc:
        first, *rest = str(exc).splitlines() or [type(exc).__name__]
        details = [line.strip() for line in rest if line.strip()]
        named = bool(option) and first.startswith(option)  # "--start: 'x' is not a date; ..."
        raise UsageError("" if named else option, first.rstrip(":"), fix, details=details) from None


# ---------------------------------------------------------------- option callbacks (typer)


def option_name(param: Any) -> str:
    """The long form of an option (``--tls-cert``), or an argument's metavar (``FILES``)."""
    opts = [o for o in getattr(param, "opts", None) or () if isinstance(o, str)]
    long = [o for o in opts if o.startswith("--")]
    if long:
        return max(long, key=len)
    if opts and opts[0].startswith("-"):
        return opts[0]
    return str(getattr(param, "human_readable_name", None) or getattr(param, "name", "")).upper()


def _check_input(option: str, path: Path) -> None:
    fix = "give the path of an existing, readable file"
    if not path.exists():
        raise UsageError(option, f"no such file {str(path)!r}", fix)
    if path.is_dir():
        raise UsageError(option, f"{str(path)!r} is a directory, not a file", fix)
    if not os.access(path, os.R_OK):
        raise UsageError(option, f"cannot read {str(path)!r} (permission denied)", fix)


def input_file(param: typer.CallbackParam, value: Path | None) -> Path | None:
    """Option callback: the file must exist and be readable."""
    if value is not None:
        _check_input(option_name(param), value)
    return value


def _check_output(option: str, path: Path, what: str) -> None:
    if path.is_dir():
        raise UsageError(option, f"{str(path)!r} is a directory", f"give {what}")
    parent = path.parent
    if not parent.is_dir():
        raise UsageError(
            option, f"folder {str(parent)!r} does not exist", "create it or write elsewhere"
        )
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise UsageError(
            option, f"cannot write {str(path)!r} (permission denied)", "write elsewhere"
        )


def output_file(param: typer.CallbackParam, value: Path | None) -> Path | None:
    """Option callback: ``-`` (standard output), or a file whose folder exists."""
    if value is not None and value != STDOUT:
        _check_output(option_name(param), value, "a file name, or - for standard output")
    return value


def writable_path(param: typer.CallbackParam, value: Path | None) -> Path | None:
    """Option callback: a file to create or update (a ledger); its folder must exist."""
    if value is not None:
        _check_output(option_name(param), value, "a file name")
    return value


def positive(param: typer.CallbackParam, value: float | None) -> float | None:
    """Option callback: a number above 0 (typer's ``min`` accepts the bound itself)."""
    if value is not None and not value > 0:
        raise UsageError(
            option_name(param), f"must be above 0 (got {value:g})", "give e.g. 1 or 30"
        )
    return value


def is_stdout(path: Path | None) -> bool:
    """True when an output option is absent or ``-``."""
    return path is None or path == STDOUT


# ---------------------------------------------------------------- the handler


def _debug(ctx: Any) -> bool:
    root = ctx.find_root() if ctx is not None else None
    if root is not None and root.meta.get(DEBUG_KEY):
        return True
    return os.environ.get(DEBUG_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def _help_hint(ctx: Any) -> str:
    path = getattr(ctx, "command_path", "") or "lowcarb"
    return f"see '{path} --help'"


def usage_lines(exc: Exception) -> list[str]:
    """Typer's own usage error (range, choice, missing or unknown option) as lowcarb's line."""
    ctx = getattr(exc, "ctx", None)
    param = getattr(exc, "param", None)
    name = type(exc).__name__
    message = str(getattr(exc, "message", "") or "").removeprefix("Value error, ")  # pydantic
    if name == "NoSuchOption":
        option = str(getattr(exc, "option_name", "") or "")
        hints = sorted(getattr(exc, "possibilities", None) or ())
        fix = f"did you mean {' or '.join(hints)}?" if hints else _help_hint(ctx)
        return UsageError(option, "no such option", fix).lines()
    if param is not None:
        option = option_name(param)
        problem = "is required" if name == "MissingParameter" else message or "is not valid"
        return UsageError(option, problem, "" if ";" in problem else _help_hint(ctx)).lines()
    if not message:
        format_message = getattr(exc, "format_message", None)
        message = format_message() if callable(format_message) else str(exc)
    return UsageError("", message, _help_hint(ctx)).lines()


@contextlib.contextmanager
def _reported(ctx: Any) -> Iterator[None]:
    """Print a usage mistake as lowcarb's line and exit 2; a bug as one line and exit 1."""
    try:
        yield
    except (typer.Exit, typer.Abort):
        raise
    except UsageError as exc:
        _emit(exc.lines())
        raise typer.Exit(EXIT_USAGE) from None
    except _TyperUsageError as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # typer shows the help itself
            raise
        _emit(usage_lines(exc))
        raise typer.Exit(EXIT_USAGE) from None
    except Exception as exc:
        if _debug(ctx) or getattr(exc, "exit_code", None) is not None or _broken_pipe(exc):
            raise  # --debug: typer prints the traceback; typer's own exceptions and a reader
            # that went away (lowcarb report --out - | head): typer's quiet handling
        what = one_line(f"{type(exc).__name__}: {exc}")
        _emit(
            [
                f"lowcarb: internal error: {what}; this is a bug in lowcarb: rerun with "
                f"'lowcarb --debug ...' (or {DEBUG_ENV}=1) for the traceback and report it"
            ]
        )
        raise typer.Exit(EXIT_INTERNAL) from None


def _broken_pipe(exc: Exception) -> bool:
    return isinstance(exc, OSError) and exc.errno == errno.EPIPE


def _emit(lines: list[str]) -> None:
    for line in lines:
        typer.echo(line, err=True)


class _Reporting:
    """make_context (parsing) and invoke (running) print lowcarb's lines instead of raising."""

    def make_context(
        self, info_name: str | None, args: list[str], parent: Any = None, **extra: Any
    ) -> Any:
        with _reported(parent):
            return super().make_context(info_name, args, parent=parent, **extra)  # type: ignore[misc]

    def invoke(self, ctx: Any) -> Any:
        with _reported(ctx):
            return super().invoke(ctx)  # type: ignore[misc]


def plain_types(command: Any) -> Any:
    """Help without typer's ``<bool>``/``<str>`` markers, on ``command`` and its parameters.

    typer (0.2x) labels every parameter's type as ``<type>``, flags and ``--help`` included. Here a
    flag shows no type and a value shows click's plain name (``TEXT``, ``PATH``, ``FLOAT``; the
    choices themselves for an enum), so a help screen reads as usual and fits 80 columns.
    """
    for param in getattr(command, "params", ()):
        if getattr(param, "_lowcarb_plain", False):
            continue
        param.display_type_rich = lambda ctx, param=param: _plain_label(param, ctx)
        param._lowcarb_plain = True
    return command


_NAMES = {"str": "TEXT", "int": "INTEGER", "float": "FLOAT", "path": "PATH", "bool": "BOOLEAN"}


def _plain_label(param: Any, ctx: Any) -> str | None:
    if getattr(param, "is_flag", False) or getattr(param, "count", False):
        return None
    metavar = getattr(param, "metavar", None)
    if metavar is not None and getattr(param, "param_type_name", "") == "option":
        return str(metavar)
    try:
        typed = str(type(param).display_type(param, ctx))  # typer's "<float range>", "<path>"
    except Exception:  # another typer: no type column rather than a broken help screen
        return None
    inner = typed.strip("<>")
    desc = getattr(param, "type_descriptor", None)
    if desc is not None and getattr(desc, "is_choice", False):
        return inner.removeprefix("list[").removesuffix("]")
    inner = inner.removeprefix("list[").removesuffix("]").split()[0] if inner else "str"
    label = _NAMES.get(inner.lower(), inner.upper())
    many = getattr(param, "nargs", 1) != 1 or getattr(param, "multiple", False)
    return f"{label}..." if many else label


class LowcarbGroup(_Reporting, TyperGroup):
    """The group class of every lowcarb typer app: mistakes reach the user as lowcarb's lines,
    help screens carry no ``<type>`` markers (:func:`plain_types`)."""

    def get_params(self, ctx: Any) -> Any:
        return plain_types(_Params(super().get_params(ctx)))

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            _plain_all(command, ctx)
        return command


class LowcarbCommand(_Reporting, TyperCommand):
    """The same for an app of one command (typer then runs the command without a group)."""

    def get_params(self, ctx: Any) -> Any:
        return plain_types(_Params(super().get_params(ctx)))


class _Params(list[Any]):
    """A parameter list seen as a command (``plain_types`` reads ``.params``)."""

    @property
    def params(self) -> list[Any]:
        return list(self)


def _plain_all(command: Any, ctx: Any) -> None:
    getter = getattr(command, "get_params", None)
    plain_types(_Params(getter(ctx)) if callable(getter) else command)


def new_app(**kwargs: Any) -> typer.Typer:
    """A ``typer.Typer`` whose errors go through :class:`LowcarbGroup`."""
    kwargs.setdefault("add_completion", False)
    kwargs.setdefault("no_args_is_help", True)
    return typer.Typer(cls=LowcarbGroup, **kwargs)


def command_app(fn: Callable[..., Any], **kwargs: Any) -> typer.Typer:
    """A ``typer.Typer`` of the one command ``fn`` (benchmarks, tests) with lowcarb's errors."""
    kwargs.setdefault("add_completion", False)
    app = typer.Typer(**kwargs)
    app.command(cls=LowcarbCommand)(fn)
    return app


def require(ok: bool, option: str, problem: str, fix: str = "") -> None:
    """Raise :class:`UsageError` unless ``ok`` (a check between options)."""
    if not ok:
        raise UsageError(option, problem, fix)
