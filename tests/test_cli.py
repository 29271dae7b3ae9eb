"""`python -m loopsvc` in subprocesses: demo, run, check, signals, logs, errors, exit codes."""

from __future__ import annotations

import datetime
import json
import queue
import signal
import subprocess
import sys
import textwrap
import threading
import time
from typing import TYPE_CHECKING

import pytest

import loopsvc

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.realclock
TIMEOUT = 60  # generous: a loaded 2-core machine starts Python slowly

SERVICES_MODULE = """
    import loopsvc

    class Tick(loopsvc.LoopService):
        loop_seconds = 0.05
        async def run_once(self):
            self.logger.info("tick from %s", self.name)

    class Busy(loopsvc.LoopService):
        loop_seconds = 0.05
        async def run_once(self):
            import anyio
            self.logger.info("busy run starts")
            await anyio.sleep(30)

    class BadSetup(loopsvc.LoopService):
        async def setup(self):
            raise OSError("no database")

        async def run_once(self):
            pass

    instance = Tick(name="instance")

    def factory():
        return [Tick(name="made1"), Tick(name="made2")]

    def raises():
        raise RuntimeError("no config")

    def wrong():
        return 42

    not_a_service = 3
"""


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "loopsvc", *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        cwd=cwd,
        check=False,
    )


class Process:
    """A CLI process whose stderr is read line by line in a thread."""

    def __init__(self, *args: str, cwd: Path | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "loopsvc", *args],
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
            cwd=cwd,
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self._queue.put(line)
        self._queue.put(None)

    def wait_for(self, text: str) -> None:
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            try:
                line = self._queue.get(timeout=deadline - time.monotonic())
            except queue.Empty:
                break
            if line is None:
                break
            self.lines.append(line)
            if text in line:
                return
        self.proc.kill()
        self.finish()
        pytest.fail(f"never saw {text!r} in:\n{''.join(self.lines)}")

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def finish(self) -> tuple[int, str]:
        code = self.proc.wait(timeout=TIMEOUT)
        while (line := self._queue.get(timeout=TIMEOUT)) is not None:
            self.lines.append(line)
        assert self.proc.stderr is not None
        self.proc.stderr.close()
        return code, "".join(self.lines)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "mysvc.py").write_text(textwrap.dedent(SERVICES_MODULE))
    return tmp_path


def test_demo_with_loops_exits_zero_and_shows_what_the_library_does() -> None:
    """The demo shows a heartbeat, a logged failure and an overrun warning, then exits 0."""
    result = run_cli("--loops", "2")
    assert result.returncode == 0, result.stderr
    assert "heartbeat 2" in result.stderr
    assert "flaky: run 2 failed: RuntimeError('simulated failure of run 2')" in result.stderr
    assert "Traceback (most recent call last)" in result.stderr  # the logged failure's traceback
    assert "which is longer than its loop interval of 1 seconds; the next run starts at once" in result.stderr
    assert "jittery: run 2 timed out after 0.5 seconds" in result.stderr


def test_run_hosts_a_class_an_instance_and_a_factory(project: Path) -> None:
    """run accepts a LoopService subclass, an instance and a factory returning several."""
    result = run_cli("run", "mysvc:Tick", "mysvc:instance", "mysvc:factory", "--loops", "2", cwd=project)
    assert result.returncode == 0, result.stderr
    for name in ("Tick", "instance", "made1", "made2"):
        assert result.stderr.count(f"tick from {name}\n") == 2


def test_run_on_the_asyncio_backend_with_json_logs(project: Path) -> None:
    """--backend asyncio works; --log-format json prints one parseable object per line."""
    result = run_cli(
        "run",
        "mysvc:Tick",
        "--loops",
        "6",
        "--backend",
        "asyncio",
        "--log-format",
        "json",
        "--status-every",
        "0.1",
        cwd=project,
    )
    assert result.returncode == 0, result.stderr
    entries = [json.loads(line) for line in result.stderr.splitlines()]
    ticks = [e for e in entries if e["message"] == "tick from Tick"]
    assert len(ticks) == 6
    status = [e for e in entries if e["logger"] == "loopsvc.status"]
    assert status
    assert status[0]["message"].startswith("Tick: ")
    assert "healthy=" in status[0]["message"]
    assert set(ticks[0]) == {"time", "level", "logger", "message"}
    assert ticks[0]["logger"] == "loopsvc.services.tick"


def test_a_failing_service_exits_one_and_says_which(project: Path) -> None:
    """A service whose setup fails: the others stop, exit 1, stderr names the service."""
    result = run_cli("run", "mysvc:BadSetup", "mysvc:Tick", cwd=project)
    assert result.returncode == 1, result.stderr
    assert result.stderr.splitlines()[-1] == "loopsvc: service 'BadSetup' failed: OSError('no database')"


def test_loop_seconds_overrides_every_interval(project: Path) -> None:
    """--loop-seconds 0.4 spaces the runs of a 0.05 s service by 0.4 s (a lower bound only)."""
    result = run_cli("run", "mysvc:Tick", "--loops", "2", "--loop-seconds", "0.4", "--log-format", "json", cwd=project)
    assert result.returncode == 0, result.stderr
    times = [
        datetime.datetime.fromisoformat(e["time"])
        for e in map(json.loads, result.stderr.splitlines())
        if e["message"] == "tick from Tick"
    ]
    assert len(times) == 2
    assert (times[1] - times[0]).total_seconds() >= 0.39


def test_check_lists_the_services_and_runs_nothing(project: Path) -> None:
    """check prints each service with its interval and exits 0."""
    result = run_cli("check", "mysvc:Tick", "mysvc:factory", cwd=project)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "Tick: every 0.05s, overrun=delay (mysvc.Tick)",
        "made1: every 0.05s, overrun=delay (mysvc.Tick)",
        "made2: every 0.05s, overrun=delay (mysvc.Tick)",
        "3 services ok",
    ]
    assert "tick from" not in result.stderr


def test_sigterm_stops_the_demo_gracefully() -> None:
    """SIGTERM during the demo: exit 0 within a few seconds, every service shut down."""
    process = Process("demo")
    process.wait_for("heartbeat 1")
    sent = time.monotonic()
    process.signal(signal.SIGTERM)
    code, output = process.finish()
    assert code == 0, output
    assert time.monotonic() - sent < 15
    assert "received SIGTERM: stopping gracefully" in output
    assert "all services stopped" in output


def test_two_sigints_force_the_stop_and_exit_one(project: Path) -> None:
    """The second SIGINT cancels the run in flight; exit 1 names the service."""
    process = Process("run", "mysvc:Busy", "--grace", "600", cwd=project)
    process.wait_for("busy run starts")
    process.signal(signal.SIGINT)
    process.wait_for("stopping gracefully")
    process.signal(signal.SIGINT)
    code, output = process.finish()
    assert code == 1, output
    assert "forcing the stop" in output
    assert output.splitlines()[-1] == "loopsvc: the stop cancelled work in flight of: Busy"


def test_sigusr1_prints_a_status_table_and_keeps_running(project: Path) -> None:
    """SIGUSR1 prints a table of every service to stderr; the process goes on."""
    process = Process("run", "mysvc:Tick", cwd=project)
    process.wait_for("tick from Tick")
    process.signal(signal.SIGUSR1)
    process.wait_for("service  state")
    process.wait_for("Tick ")
    process.wait_for("tick from Tick")  # still running
    process.signal(signal.SIGTERM)
    code, output = process.finish()
    assert code == 0, output
    header = next(line for line in output.splitlines() if line.startswith("service"))
    assert header.split() == ["service", "state", "runs", "failures", "last", "duration", "next", "run", "healthy"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "nosuchmodule:X"], "loopsvc: cannot import module 'nosuchmodule': No module named 'nosuchmodule'"),
        (["run", "mysvc:Missing"], "loopsvc: module 'mysvc' has no attribute 'Missing'"),
        (["run", "mysvc"], "loopsvc: target 'mysvc' must have the form module:name"),
        (
            ["run", "mysvc:not_a_service"],
            "loopsvc: mysvc:not_a_service is not a LoopService subclass, instance or factory: got 3",
        ),
        (["run", "mysvc:raises"], "loopsvc: mysvc:raises: the factory raised RuntimeError('no config')"),
        (
            ["run", "mysvc:wrong"],
            "loopsvc: mysvc:wrong: the factory returned 42, expected a LoopService or an iterable of them",
        ),
        (
            ["run", "mysvc:Tick", "mysvc:Tick"],
            "loopsvc: `services` has two services named 'Tick'; give one a different `name=`",
        ),
        (
            ["check", "mysvc:instance", "mysvc:instance"],
            "loopsvc: `services` lists <Tick name='instance' loop_seconds=0.05 state=idle> twice",
        ),
        (["--loops", "0"], "loopsvc: argument --loops: must be an integer >= 1, got '0'"),
        (["--loops", "two"], "loopsvc: argument --loops: must be an integer >= 1, got 'two'"),
        (
            ["--loop-seconds", "-1"],
            "loopsvc: argument --loop-seconds: must be a positive finite number of seconds, got '-1'",
        ),
        (
            ["--loop-seconds", "nan"],
            "loopsvc: argument --loop-seconds: must be a positive finite number of seconds, got 'nan'",
        ),
        (["--grace", "inf"], "loopsvc: argument --grace: must be a non-negative finite number of seconds, got 'inf'"),
        (["--backend", "curio"], "loopsvc: argument --backend: invalid choice: 'curio'"),
        (["frobnicate"], "loopsvc: argument {demo,run,check}: invalid choice: 'frobnicate'"),
    ],
)
def test_user_mistakes_give_one_line_and_exit_two(project: Path, args: list[str], message: str) -> None:
    """Every user mistake: exit 2, one `loopsvc:` line on stderr, no traceback."""
    result = run_cli(*args, cwd=project)
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(message), lines[0]


def test_a_user_module_that_raises_while_importing_shows_its_own_traceback(tmp_path: Path) -> None:
    """The user's module's traceback is shown (not loopsvc's), then exit 2."""
    (tmp_path / "broken.py").write_text("x = 1\nraise ValueError('bad config')\n")
    result = run_cli("check", "broken:x", cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert lines[0] == "loopsvc: module 'broken' raised while importing:"
    assert lines[-1] == "ValueError: bad config"
    assert "broken.py" in result.stderr
    assert "_cli.py" not in result.stderr


def test_version() -> None:
    """--version prints the version."""
    result = run_cli("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"loopsvc {loopsvc.__version__}"
