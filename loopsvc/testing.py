"""Tools for testing loop services in virtual time, the way `trio.testing` tests Trio code.

Run a service, several, or a ServiceGroup for an amount of loop-clock time and get back what
happened: when each run started, how long it took, how it ended, the skipped slots, the final
stats and the log records. Under pytest-trio's `autojump_clock` fixture a virtual day passes in
milliseconds, and nothing here reads the wall clock or sleeps on the real clock::

    async def test_cleanup_runs_every_minute(autojump_clock):
        report = await loopsvc.testing.run_for(Cleanup(), 180)
        loopsvc.testing.assert_schedule(report.run_starts("Cleanup"), [0, 60, 120, 180])

Jittered schedules are reproducible with the service's `seed=` argument.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

import anyio
import anyio.lowlevel
import trio
import trio.lowlevel
import trio.testing

from . import _validate
from ._group import ServiceGroup
from ._service import LoopService
from ._stats import Outcome, RunRecord
from ._tasks import open_task_group

if TYPE_CHECKING:
    from ._stats import ServiceStats

__all__ = ["Outcome", "Report", "RunRecord", "ServiceReport", "assert_schedule", "run_for"]


@dataclasses.dataclass(frozen=True)
class ServiceReport:
    """What one service did during `run_for`. Offsets are seconds from the start of `run_for`."""

    name: str
    runs: tuple[RunRecord, ...]
    """Every run that ended, in order; times on the loop clock."""
    stats: ServiceStats
    """The service's stats when `run_for` returned."""
    records: tuple[logging.LogRecord, ...]
    """The log records of the service's logger."""
    origin: float
    """The loop-clock time `run_for` started at."""

    @property
    def starts(self) -> list[float]:
        """The start of every run, as an offset from the start of `run_for`."""
        return [run.started_at - self.origin for run in self.runs]

    @property
    def durations(self) -> list[float]:
        return [run.duration_seconds for run in self.runs]

    @property
    def outcomes(self) -> list[Outcome]:
        return [run.outcome for run in self.runs]

    @property
    def skipped(self) -> int:
        """Slots the "skip" policy passed over."""
        return sum(run.skipped_before for run in self.runs)

    @property
    def messages(self) -> list[str]:
        return [record.getMessage() for record in self.records]


@dataclasses.dataclass(frozen=True)
class Report:
    """What `run_for` saw, service by service (in the order they were given)."""

    origin: float
    """The loop-clock time `run_for` started at."""
    elapsed: float
    """Loop-clock seconds until every service had stopped."""
    services: Mapping[str, ServiceReport]
    group_records: tuple[logging.LogRecord, ...]
    """Log records of the group itself (`loopsvc.group`): restarts, failures, forced stops."""

    def __getitem__(self, name: str) -> ServiceReport:
        try:
            return self.services[name]
        except KeyError:
            msg = f"no service named {name!r} in this report; it has {', '.join(map(repr, self.services))}"
            raise KeyError(msg) from None

    def run_starts(self, name: str) -> list[float]:
        """The start offsets of the runs of service `name`."""
        return self[name].starts

    def outcomes(self, name: str) -> list[Outcome]:
        return self[name].outcomes


class _Collector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.NOTSET)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _as_group(target: object, loops: int | None) -> ServiceGroup:
    if isinstance(target, ServiceGroup):
        if loops is not None:
            msg = "`loops` cannot be given with a ServiceGroup: pass it to the ServiceGroup"
            raise ValueError(msg)
        return target
    services = [target] if isinstance(target, LoopService) else target
    if not isinstance(services, Iterable) or isinstance(services, str | bytes):
        msg = f"`services` must be a LoopService, an iterable of them or a ServiceGroup, got {target!r}"
        raise TypeError(msg)
    return ServiceGroup(services, handle_signals=False, loops=loops)


async def run_for(
    services: LoopService | Iterable[LoopService] | ServiceGroup,
    seconds: float | None = None,
    *,
    loops: int | None = None,
    log_level: int = logging.INFO,
) -> Report:
    """Run services for `seconds` of loop-clock time (or `loops` runs each), then stop them.

    The stop is graceful (runs in flight finish, shutdown hooks run), as in production. With
    both `seconds` and `loops`, whichever comes first ends the run. A service can be one that
    ran before: its stats keep counting. Meant for Trio tests with pytest-trio's
    `autojump_clock`, where it takes milliseconds of real time.

    Args:
        services: A LoopService, an iterable of them, or a ServiceGroup (whose own options,
            such as `loops`, `grace_seconds` and `restart`, then apply).
        seconds: How long to run, on the loop clock; a run starting exactly then still runs.
        loops: Run each service this many times (not with a ServiceGroup).
        log_level: Capture the services' log records from this level up (default INFO).

    Returns:
        A Report of every service's runs, stats and log records.

    Raises:
        ValueError, TypeError: Bad arguments; neither `seconds` nor `loops` given.
        ExceptionGroup: As `ServiceGroup.run()` raises it, when services fail.
    """
    group = _as_group(services, _validate.optional_integer("loops", loops, minimum=1))
    limit = _validate.optional_seconds("seconds", seconds, allow_zero=True)
    if limit is None and group.loops is None:
        msg = "give `seconds`, `loops`, or both: without them the services would run for ever"
        raise ValueError(msg)
    members = group.services
    runs: dict[str, list[RunRecord]] = {service.name: [] for service in members}
    collectors = {service.name: _Collector() for service in members}
    group_collector = _Collector()
    watched = [(service.logger, collectors[service.name]) for service in members]
    watched.append((logging.getLogger("loopsvc.group"), group_collector))
    levels = [logger.level for logger, _ in watched]
    for service in members:
        service._observer = runs[service.name].append  # noqa: SLF001 (the hook exists for this)
    for logger, collector in watched:
        logger.addHandler(collector)
        if logger.getEffectiveLevel() > log_level:
            logger.setLevel(log_level)
    origin = anyio.current_time()
    try:
        await _drive(group, origin + limit if limit is not None else math.inf)
    finally:
        for service in members:
            service._observer = None  # noqa: SLF001
        for (logger, collector), level in zip(watched, levels, strict=True):
            logger.removeHandler(collector)
            logger.setLevel(level)
    reports = {
        service.name: ServiceReport(
            name=service.name,
            runs=tuple(runs[service.name]),
            stats=service.stats,
            records=tuple(collectors[service.name].records),
            origin=origin,
        )
        for service in members
    }
    return Report(origin, anyio.current_time() - origin, reports, tuple(group_collector.records))


async def _drive(group: ServiceGroup, deadline: float) -> None:
    async def stop_at_deadline() -> None:
        await anyio.sleep_until(deadline)
        await _let_due_runs_start()
        group.request_stop()

    async with open_task_group() as task_group:
        if deadline < math.inf:
            task_group.start_soon(stop_at_deadline)
        await group.run()
        task_group.cancel_scope.cancel()


async def _let_due_runs_start() -> None:
    """Let every run due at this instant start before the stop, so ties are deterministic."""
    try:
        trio.lowlevel.current_root_task()
    except RuntimeError:  # not under Trio: a few scheduling rounds are the best there is
        for _ in range(16):
            await anyio.lowlevel.checkpoint()
    else:
        await trio.testing.wait_all_tasks_blocked()


def assert_schedule(actual: Sequence[float], expected: Sequence[float], *, tolerance: float = 1e-9) -> None:
    """Assert that run offsets match the expected ones, with a readable diff when they do not.

    Raises:
        AssertionError: The lists differ in length, or some offset by more than `tolerance`.
    """
    width = max(len(actual), len(expected))
    rows: list[str] = []
    wrong = 0
    for index in range(width):
        got = actual[index] if index < len(actual) else None
        want = expected[index] if index < len(expected) else None
        ok = got is not None and want is not None and abs(got - want) <= tolerance
        wrong += not ok
        mark = "  " if ok else "!!"
        rows.append(f"{mark} {index:>4}  {_cell(want):>14}  {_cell(got):>14}")
    if wrong:
        header = f"schedule differs in {wrong} of {width} runs (expected {len(expected)}, got {len(actual)}):"
        table = "\n".join([header, f"   {'run':>4}  {'expected':>14}  {'actual':>14}", *rows])
        raise AssertionError(table)


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.6g}"
