# The command line: `python -m loopsvc [demo|run|check] ...`.
#
# A user mistake (a bad option, a target that does not import or is not a service) ends with
# one line on stderr starting with "loopsvc:" and exit code 2, never a traceback; the one
# exception is a user's module whose own code raised while importing, whose traceback is the
# useful part. Exit codes: 0 stopped gracefully, 1 a service failed or the stop had to cancel
# runs in flight, 2 a usage or target error. Logging is configured here, for this process only;
# the library itself never adds handlers.
from __future__ import annotations

import argparse
import datetime
import importlib
import json
import logging
import pathlib
import signal
import sys
import traceback
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, NoReturn

import anyio

from . import __version__, _validate
from ._demo import demo_services
from ._group import RESTART_POLICIES, ServiceGroup
from ._service import LoopService, safe_repr
from ._tasks import open_task_group

if TYPE_CHECKING:
    from collections.abc import Sequence

    import pendulum

    from ._stats import ServiceStats

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
COMMANDS = ("demo", "run", "check")
status_logger = logging.getLogger("loopsvc.status")


class UsageError(Exception):
    """A mistake of the user's: reported as one line, exit code 2."""


class UserModuleError(Exception):
    """The user's own module raised while importing: its traceback is shown, exit code 2."""

    def __init__(self, module: str, error: Exception) -> None:
        super().__init__(module)
        self.module = module
        self.error = error


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"loopsvc: {message} (see `python -m loopsvc {self._command()}--help`)\n")
        raise SystemExit(EXIT_USAGE)

    def _command(self) -> str:
        command = self.prog.split()[-1]
        return f"{command} " if command in COMMANDS else ""


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        msg = f"must be an integer >= 1, got {text!r}"
        raise argparse.ArgumentTypeError(msg) from None
    if value < 1:
        msg = f"must be an integer >= 1, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


def _seconds(*, allow_zero: bool) -> Any:
    def convert(text: str) -> float:
        try:
            return _validate.seconds("value", float(text), allow_zero=allow_zero)
        except ValueError:
            kind = "non-negative" if allow_zero else "positive"
            msg = f"must be a {kind} finite number of seconds, got {text!r}"
            raise argparse.ArgumentTypeError(msg) from None

    return convert


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m loopsvc",
        description="Host periodic loop services, or watch the demo ones.",
    )
    parser.add_argument("--version", action="version", version=f"loopsvc {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="{demo,run,check}")

    hosting = _Parser(add_help=False)
    hosting.add_argument("--loops", type=_positive_int, metavar="N", help="run each service N times, then exit")
    hosting.add_argument(
        "--loop-seconds", type=_seconds(allow_zero=False), metavar="S", help="override every service's interval"
    )
    hosting.add_argument(
        "--grace",
        type=_seconds(allow_zero=True),
        default=30.0,
        metavar="S",
        help="seconds a stop may take before runs in flight are cancelled (default 30)",
    )
    hosting.add_argument("--backend", choices=("trio", "asyncio"), default="trio", help="default: trio")
    hosting.add_argument(
        "--restart", choices=RESTART_POLICIES, default="never", help="restart a service whose start fails"
    )
    hosting.add_argument(
        "--log-level",
        type=str.upper,
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        default="INFO",
        help="default: INFO",
    )
    hosting.add_argument("--log-format", choices=("text", "json"), default="text", help="default: text")
    hosting.add_argument(
        "--status-every", type=_seconds(allow_zero=False), metavar="S", help="log a status line every S seconds"
    )

    commands.add_parser("demo", parents=[hosting], help="run the demo services until SIGINT/SIGTERM")
    run = commands.add_parser("run", parents=[hosting], help="host your services: TARGET is module:name")
    run.add_argument("targets", nargs="+", metavar="TARGET", help="module:name of a service, class or factory")
    check = commands.add_parser("check", help="import and validate targets, run nothing")
    check.add_argument("targets", nargs="+", metavar="TARGET")
    return parser


# Targets.


def _import(module_name: str) -> Any:
    try:
        return importlib.import_module(module_name)
    except ImportError as error:
        msg = f"cannot import module {module_name!r}: {error}"
        raise UsageError(msg) from None
    except Exception as error:  # noqa: BLE001 (the user's module raised: shown with its traceback)
        raise UserModuleError(module_name, error) from None


def _as_services(target: str, value: Any) -> list[LoopService]:
    if isinstance(value, type) and issubclass(value, LoopService):
        try:
            return [value()]
        except Exception as error:  # noqa: BLE001 (a user mistake, reported in one line)
            msg = f"{target}: cannot build {value.__name__}() with no arguments: {safe_repr(error)}"
            raise UsageError(msg) from None
    if isinstance(value, LoopService):
        return [value]
    if not callable(value):
        msg = f"{target} is not a LoopService subclass, instance or factory: got {safe_repr(value)}"
        raise UsageError(msg)
    try:
        made = value()
    except Exception as error:  # noqa: BLE001 (a user mistake, reported in one line)
        msg = f"{target}: the factory raised {safe_repr(error)}"
        raise UsageError(msg) from None
    if isinstance(made, LoopService):
        return [made]
    if isinstance(made, Iterable) and not isinstance(made, str | bytes):
        services = list(made)
        if services and all(isinstance(s, LoopService) for s in services):
            return services
    msg = f"{target}: the factory returned {made!r}, expected a LoopService or an iterable of them"
    raise UsageError(msg)


def load_targets(targets: Sequence[str]) -> list[LoopService]:
    """Import `module:name` targets and return their services.

    Raises:
        UsageError: A target is malformed, does not import, or is not a service.
    """
    cwd = str(pathlib.Path.cwd())
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    services: list[LoopService] = []
    for target in targets:
        module_name, colon, attribute = target.partition(":")
        if not colon or not module_name or not attribute:
            msg = f"target {target!r} must have the form module:name"
            raise UsageError(msg)
        value = _import(module_name)
        for part in attribute.split("."):
            try:
                value = getattr(value, part)
            except AttributeError:
                msg = f"module {module_name!r} has no attribute {attribute!r}"
                raise UsageError(msg) from None
        services.extend(_as_services(target, value))
    for service in services:
        try:
            service._check_startable()  # noqa: SLF001 (report it now, as a usage error)
        except (TypeError, RuntimeError) as error:
            raise UsageError(str(error)) from None
    return services


# Logging and status.


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure_logging(level: str, log_format: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger("loopsvc")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


def _local(moment: pendulum.DateTime | None) -> str:
    return "-" if moment is None else moment.astimezone().strftime("%H:%M:%S")


def _seconds_text(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}s"


def status_table(stats: Iterable[ServiceStats]) -> str:
    """A plain-text table of every service: state, runs, failures, timing, health."""
    header = ("service", "state", "runs", "failures", "last duration", "next run", "healthy")
    rows = [
        (
            s.name,
            s.state.value,
            str(s.runs),
            str(s.failures + s.timeouts),
            _seconds_text(s.last_duration_seconds),
            _local(s.next_run_at),
            "yes" if s.healthy else "no",
        )
        for s in stats
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]
    return "\n".join(lines)


def status_line(s: ServiceStats) -> str:
    return (
        f"{s.name}: {s.state.value}, runs={s.runs} failures={s.failures} timeouts={s.timeouts} "
        f"last={_seconds_text(s.last_duration_seconds)} next={_local(s.next_run_at)} "
        f"healthy={'yes' if s.healthy else 'no'}"
    )


async def _print_status_on_sigusr1(group: ServiceGroup) -> None:
    with anyio.open_signal_receiver(signal.SIGUSR1) as received:
        async for _ in received:
            sys.stderr.write(status_table(group.stats) + "\n")
            sys.stderr.flush()


async def _log_status_every(group: ServiceGroup, seconds: float) -> None:
    while True:
        await anyio.sleep(seconds)
        for stats in group.stats:
            status_logger.info("%s", status_line(stats))


async def host(group: ServiceGroup, status_every: float | None) -> None:
    """Run the group with the CLI's status tasks beside it."""
    async with open_task_group() as task_group:
        if hasattr(signal, "SIGUSR1"):
            task_group.start_soon(_print_status_on_sigusr1, group)
        if status_every is not None:
            task_group.start_soon(_log_status_every, group, status_every)
        await group.run()
        task_group.cancel_scope.cancel()


# Commands.


def _describe_service(service: LoopService) -> str:
    options = [f"every {service.loop_seconds:g}s", f"overrun={service.overrun}"]
    options += [
        f"{option}={getattr(service, option)!r}"
        for option in ("jitter", "spread", "first_run_after", "run_timeout_seconds", "backoff_max_seconds")
        if getattr(service, option) != getattr(LoopService, option)
    ]
    kind = f"{type(service).__module__}.{type(service).__qualname__}"
    return f"{service.name}: {', '.join(options)} ({kind})"


def _check(args: argparse.Namespace) -> int:
    services = load_targets(args.targets)
    _build_group(services)
    for service in services:
        sys.stdout.write(_describe_service(service) + "\n")
    sys.stdout.write(f"{len(services)} service{'s' if len(services) != 1 else ''} ok\n")
    return EXIT_OK


def _build_group(services: list[LoopService], **options: Any) -> ServiceGroup:
    try:
        return ServiceGroup(services, **options)
    except (TypeError, ValueError) as error:
        raise UsageError(str(error)) from None


def _serve(args: argparse.Namespace) -> int:
    services = demo_services() if args.command == "demo" else load_targets(args.targets)
    if args.loop_seconds is not None:
        for service in services:
            service.loop_seconds = args.loop_seconds
    group = _build_group(services, grace_seconds=args.grace, restart=args.restart, loops=args.loops)
    configure_logging(args.log_level, args.log_format)
    plural = "s" if args.loops != 1 else ""
    until = f"each runs {args.loops} time{plural}" if args.loops else "Ctrl-C (SIGINT) or SIGTERM stops them"
    logging.getLogger("loopsvc.cli").info(
        "hosting %s on %s: %s", ", ".join(s.name for s in services), args.backend, until
    )
    try:
        anyio.run(host, group, args.status_every, backend=args.backend)
    except ExceptionGroup as failures:
        for error in failures.exceptions:
            note = (getattr(error, "__notes__", None) or ["raised by a loopsvc service"])[0]
            sys.stderr.write(f"loopsvc: {note.removeprefix('raised by the loopsvc ')} failed: {safe_repr(error)}\n")
        return EXIT_FAILED
    finally:
        # The group's signal receiver is gone: a late signal must not kill the exit.
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, signal.SIG_IGN)
    if group.cancelled:
        sys.stderr.write(f"loopsvc: the stop cancelled work in flight of: {', '.join(group.cancelled)}\n")
        return EXIT_FAILED
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """The entry point of `python -m loopsvc`; returns the exit code."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    if not arguments or (arguments[0].startswith("-") and arguments[0] not in {"-h", "--help", "--version"}):
        arguments.insert(0, "demo")
    args = build_parser().parse_args(arguments)
    try:
        if args.command == "check":
            return _check(args)
        return _serve(args)
    except UsageError as error:
        sys.stderr.write(f"loopsvc: {error}\n")
        return EXIT_USAGE
    except UserModuleError as error:
        _report_user_module_error(error)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 128 + signal.SIGINT


def _report_user_module_error(error: UserModuleError) -> None:
    """Show the traceback of the user's module, without loopsvc's and importlib's frames."""
    sys.stderr.write(f"loopsvc: module {error.module!r} raised while importing:\n")
    frames = traceback.extract_tb(error.error.__traceback__)
    own = str(pathlib.Path(__file__).parent)
    keep = [f for f in frames if not f.filename.startswith(own) and "importlib" not in f.filename]
    if keep:
        sys.stderr.write("Traceback (most recent call last):\n" + "".join(traceback.format_list(keep)))
    sys.stderr.write("".join(traceback.format_exception_only(error.error)))
