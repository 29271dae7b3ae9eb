"""loopsvc.testing: run_for, its report, assert_schedule, and seeded jitter."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import anyio
import pytest
import trio
import trio.testing

import loopsvc
from loopsvc import LoopService, ServiceGroup
from loopsvc.testing import assert_schedule, run_for

from .helpers import Recorder


async def test_report_times_are_exact(autojump_clock: trio.testing.MockClock) -> None:
    """Starts, durations and elapsed time come out exact; a run due exactly at the end runs."""
    report = await run_for(Recorder(durations=[4, 4, 4, 4]), 30)
    service = report["Recorder"]
    assert service.starts == [0, 10, 20, 30]
    assert service.durations == [4, 4, 4, 4]
    assert report.elapsed == 34  # the run at 30 finished gracefully
    assert service.outcomes == ["ok"] * 4
    assert service.stats.runs == 4


async def test_outcomes_are_classified(autojump_clock: trio.testing.MockClock) -> None:
    """ok, error (with the exception), timeout, and cancelled by a forced stop."""
    service = Recorder(run_timeout_seconds=2, name="mixed")

    async def act(n: int) -> None:
        if n == 1:
            raise LookupError("gone")
        if n == 2:
            await trio.sleep(5)  # timed out at 2
        if n == 3:
            await trio.sleep(1000)  # cut by the group's grace period

    service.on_run = act
    group = ServiceGroup([service], handle_signals=False, grace_seconds=1)
    report = await run_for(group, 30.5)
    runs = report["mixed"].runs
    assert [r.outcome for r in runs] == ["ok", "error", "timeout", "cancelled"]
    assert isinstance(runs[1].error, LookupError)
    assert isinstance(runs[2].error, TimeoutError)
    assert runs[2].duration_seconds == 2
    assert report["mixed"].starts == [0, 10, 20, 30]
    assert runs[3].duration_seconds == 1.5  # stop at 30.5, forced after 1 s of grace
    assert report["mixed"].stats.runs == 3  # the cancelled run did not finish
    assert report.outcomes("mixed") == ["ok", "error", "timeout", "cancelled"]
    assert any("forcing the stop" in r.getMessage() for r in report.group_records)


async def test_log_records_are_captured_per_service(autojump_clock: trio.testing.MockClock) -> None:
    """Each service's log records come back in its report; logger levels are restored."""

    class Chatty(LoopService):
        loop_seconds = 5

        async def run_once(self) -> None:
            self.logger.info("hello from %s", self.name)

    a, b = Chatty(name="a"), Chatty(name="b")
    logging.getLogger("loopsvc.services.a").setLevel(logging.WARNING)
    report = await run_for([a, b], loops=2)
    assert report["a"].messages == ["hello from a", "hello from a"]
    assert report["b"].messages == ["hello from b", "hello from b"]
    assert logging.getLogger("loopsvc.services.a").level == logging.WARNING
    assert a._observer is None


async def test_skipped_slots_are_reported(autojump_clock: trio.testing.MockClock) -> None:
    """The report counts the slots the skip policy passed over."""
    report = await run_for(Recorder(overrun="skip", durations=[25]), 40)
    assert report["Recorder"].starts == [0, 30, 40]
    assert report["Recorder"].skipped == 2
    assert report["Recorder"].runs[1].skipped_before == 2


async def test_run_for_a_service_that_ran_before(autojump_clock: trio.testing.MockClock) -> None:
    """A service can be run again: the report shows the new runs, the stats keep counting."""
    service = Recorder()
    await service.start(loops=3)
    report = await run_for(service, 15)
    assert report["Recorder"].starts == [0, 10]
    assert report["Recorder"].stats.runs == 5


async def test_loops_and_seconds_whichever_first(autojump_clock: trio.testing.MockClock) -> None:
    """With loops and seconds, the first limit reached ends the run."""
    short = await run_for(Recorder(), 1000, loops=2)
    assert short.elapsed == 10
    long = await run_for(Recorder(), 25, loops=100)
    assert long["Recorder"].starts == [0, 10, 20]


async def test_the_same_seed_gives_the_same_jittered_schedule(autojump_clock: trio.testing.MockClock) -> None:
    """seed= reproduces a jittered schedule exactly; another seed gives another one."""

    async def starts(seed: int) -> list[float]:
        report = await run_for(Recorder(jitter=0.5, seed=seed), loops=20)
        return report.run_starts("Recorder")

    first, again, other = await starts(42), await starts(42), await starts(43)
    assert first == pytest.approx(again, abs=1e-9)  # offsets from different origins: float rounding
    assert first != pytest.approx(other, abs=1e-3)
    assert all(0 <= s - 10 * k < 5 for k, s in enumerate(first))


async def test_a_virtual_day_takes_well_under_a_second(autojump_clock: trio.testing.MockClock) -> None:
    """1,440 runs at a 60 s interval: a virtual day, in milliseconds of real time."""
    service = Recorder(60)
    began = time.perf_counter()
    report = await run_for(service, 24 * 3600 - 1)
    wall = time.perf_counter() - began
    assert len(report["Recorder"].runs) == 1440
    assert report["Recorder"].starts[-1] == 1439 * 60
    assert wall < 5  # typically ~0.05 s; the bound only guards against a real-clock sleep


def test_assert_schedule_passes_and_prints_a_readable_diff() -> None:
    """assert_schedule is silent on a match and shows a table of the differences otherwise."""
    assert_schedule([0, 10, 20], [0, 10, 20])
    with pytest.raises(AssertionError) as info:
        assert_schedule([0, 10, 25], [0, 10, 20, 30])
    assert str(info.value).splitlines() == [
        "schedule differs in 2 of 4 runs (expected 4, got 3):",
        "    run        expected          actual",
        "      0               0               0",
        "      1              10              10",
        "!!    2              20              25",
        "!!    3              30               -",
    ]


async def test_bad_arguments(autojump_clock: trio.testing.MockClock) -> None:
    """run_for needs seconds or loops, and services it can run."""
    with pytest.raises(ValueError, match=r"^give `seconds`, `loops`, or both"):
        await run_for(Recorder())
    with pytest.raises(ValueError, match=r"^`seconds` must be a non-negative finite number"):
        await run_for(Recorder(), -1)
    with pytest.raises(ValueError, match=r"^`loops` cannot be given with a ServiceGroup"):
        await run_for(ServiceGroup([]), 1, loops=1)
    with pytest.raises(TypeError, match=r"^`services` must be a LoopService, an iterable of them or a ServiceGroup"):
        await run_for(42, 1)  # type: ignore[arg-type]
    with pytest.raises(KeyError, match=r"no service named 'nope' in this report; it has 'Recorder'"):
        (await run_for(Recorder(), 1))["nope"]


def test_run_for_works_on_asyncio() -> None:
    """run_for also runs under asyncio (on the real clock, so kept short)."""

    async def main() -> loopsvc.testing.Report:
        return await run_for(Recorder(0.02), loops=3)

    report = anyio.run(main, backend="asyncio")
    assert len(report["Recorder"].runs) == 3


README_TEST = """
import pytest
import trio

import loopsvc
from loopsvc.testing import assert_schedule, run_for


class Sweeper(loopsvc.LoopService):
    loop_seconds = 60

    def __init__(self, **options):
        super().__init__(**options)
        self.passes = 0

    async def run_once(self):
        self.passes += 1
        if self.passes == 2:
            raise RuntimeError("database busy")  # logged; the loop goes on
        if self.passes == 3:
            await trio.sleep(90)  # an overrun: the next run starts at once


async def test_sweeper_schedule(autojump_clock):
    report = await run_for(Sweeper(), 300)  # five virtual minutes
    sweeper = report["Sweeper"]
    assert_schedule(sweeper.starts, [0, 60, 120, 210, 270])
    assert sweeper.outcomes == ["ok", "error", "ok", "ok", "ok"]
    assert sweeper.stats.overruns == 1
    assert "Sweeper: run 2 failed: RuntimeError('database busy')" in sweeper.messages


async def test_jitter_is_reproducible(autojump_clock):
    first = await run_for(Sweeper(jitter=0.1, seed=1), loops=10)
    again = await run_for(Sweeper(jitter=0.1, seed=1), loops=10)
    assert first["Sweeper"].starts == pytest.approx(again["Sweeper"].starts)
"""


def test_the_readme_example_passes(pytester: pytest.Pytester) -> None:
    """The README's "Testing your services" example is this test, and it passes."""
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    assert README_TEST.strip() in readme
    pytester.makepyfile(test_readme=README_TEST)
    pytester.makeini("[pytest]\ntrio_mode = true\n")
    result = pytester.runpytest_inprocess("-p", "trio", "-q")
    result.assert_outcomes(passed=2)
