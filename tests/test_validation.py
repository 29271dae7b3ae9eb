"""The bad-input catalogue: every public argument against bad values, each with a clear message."""

from __future__ import annotations

import datetime
import math
from typing import Any

import pytest
import trio
import trio.testing

import loopsvc
from loopsvc import LoopService, ServiceGroup

from .helpers import Recorder

NOT_NUMBERS = ["10", None, [], object()]
BAD_POSITIVE = [0, -1, -0.5, math.nan, math.inf, -math.inf, 1e10, datetime.timedelta(0), datetime.timedelta(-1)]
BAD_NON_NEGATIVE = [-1, -1e-9, math.nan, math.inf, -math.inf, 1e10, datetime.timedelta(-1)]
BOOLS = [True, False]


def cases(argument: str, *groups: tuple[type[Exception], list[Any]]) -> list[Any]:
    return [
        pytest.param(argument, value, error, id=f"{argument}={value!r}") for error, values in groups for value in values
    ]


SERVICE_CASES = [
    *cases("loop_seconds", (TypeError, ["10", [], object(), *BOOLS]), (ValueError, BAD_POSITIVE)),
    *cases("handle_signals", (TypeError, [1, 0, "yes", None])),
    *cases("name", (TypeError, [1, b"x"]), (ValueError, ["", " x", "x\n"])),
    *cases("overrun", (ValueError, ["Delay", "drop", "", 1, None])),
    *cases("jitter", (TypeError, [*NOT_NUMBERS, *BOOLS]), (ValueError, [-0.1, 1, 1.5, math.nan, math.inf])),
    *cases("spread", (TypeError, [1, 0, "true", None])),
    *cases("first_run_after", (TypeError, [*NOT_NUMBERS, *BOOLS]), (ValueError, BAD_NON_NEGATIVE)),
    *cases("run_timeout_seconds", (TypeError, ["1", *BOOLS]), (ValueError, BAD_POSITIVE)),
    *cases("backoff_max_seconds", (TypeError, ["1", *BOOLS]), (ValueError, BAD_POSITIVE)),
    *cases("shutdown_timeout_seconds", (TypeError, [*NOT_NUMBERS, *BOOLS]), (ValueError, BAD_POSITIVE)),
    *cases("seed", (TypeError, ["1", 1.5, True])),
]


@pytest.mark.parametrize(("argument", "value", "error"), SERVICE_CASES)
def test_loop_service_rejects_bad_options(argument: str, value: object, error: type[Exception]) -> None:
    """Each LoopService argument rejects bad values with a message naming it and the value."""
    with pytest.raises(error) as info:
        Recorder(**{argument: value})
    message = str(info.value)
    assert message.startswith(f"`{argument}` must be ")
    assert message.endswith(f"got {value!r}")


GROUP_CASES = [
    *cases("handle_signals", (TypeError, [1, "no", None])),
    *cases("grace_seconds", (TypeError, ["1", *BOOLS]), (ValueError, BAD_NON_NEGATIVE)),
    *cases("restart", (ValueError, ["always", "on_failure", None, 1])),
    *cases("max_restarts", (TypeError, [1.0, "5", None, *BOOLS]), (ValueError, [-1])),
    *cases("restart_window_seconds", (TypeError, [None, "60", *BOOLS]), (ValueError, BAD_POSITIVE)),
    *cases("loops", (TypeError, [1.0, "2", *BOOLS]), (ValueError, [0, -1])),
]


@pytest.mark.parametrize(("argument", "value", "error"), GROUP_CASES)
def test_service_group_rejects_bad_options(argument: str, value: object, error: type[Exception]) -> None:
    """Each ServiceGroup argument rejects bad values with a message naming it and the value."""
    with pytest.raises(error) as info:
        ServiceGroup([], **{argument: value})
    message = str(info.value)
    assert message.startswith(f"`{argument}` must be ")
    assert message.endswith(f"got {value!r}")


@pytest.mark.parametrize(("argument", "value", "error"), GROUP_CASES)
async def test_run_services_rejects_the_same_bad_options(argument: str, value: object, error: type[Exception]) -> None:
    """run_services validates exactly like ServiceGroup, before anything starts."""
    with pytest.raises(error, match=rf"^`{argument}` must be "):
        await loopsvc.run_services([], **{argument: value})


@pytest.mark.parametrize(("value", "error"), [(0, ValueError), (-3, ValueError), (1.0, TypeError), (True, TypeError)])
async def test_start_rejects_bad_loops(autojump_clock: trio.testing.MockClock, value: object, error: type) -> None:
    """start(loops=...) takes None or an int >= 1."""
    service = Recorder(handle_signals=False)
    with pytest.raises(error, match=rf"^`loops` must be an integer >= 1, got {value!r}$"):
        await service.start(loops=value)  # type: ignore[arg-type]
    assert service.events == []


def test_messages_read_well() -> None:
    """A sample of the messages, pinned in full."""
    with pytest.raises(
        ValueError, match=r"^`loop_seconds` must be a positive finite number of seconds up to 1e\+09, got 0$"
    ):
        Recorder(0)
    with pytest.raises(TypeError, match=r"^`loop_seconds` must be a number of seconds or a timedelta, got True$"):
        Recorder(True)
    with pytest.raises(ValueError, match=r"^`overrun` must be one of 'delay', 'skip', got 'drop'$"):
        Recorder(overrun="drop")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^`jitter` must be a number in \[0, 1\), got 1$"):
        Recorder(jitter=1)


def test_an_option_assigned_after_init_is_validated_at_start() -> None:
    """Assigning a bad option to an instance is caught when it starts."""
    service = Recorder(handle_signals=False)
    service.loop_seconds = -5

    async def main() -> None:
        await service.start()

    with pytest.raises(ValueError, match=r"^`loop_seconds` must be a positive finite number"):
        trio.run(main)


async def test_a_subclass_that_skips_super_init_fails_clearly(autojump_clock: trio.testing.MockClock) -> None:
    """Forgetting super().__init__() gives a TypeError at start, not a hang."""

    class Forgetful(LoopService):
        def __init__(self) -> None:
            self.name = "forgetful"

        async def run_once(self) -> None:
            pass

    with pytest.raises(TypeError, match=r"^Forgetful\.__init__\(\) must call super\(\)\.__init__\(\)$"):
        await Forgetful().start()
    with pytest.raises(TypeError, match=r"^Forgetful\.__init__\(\) must call super\(\)\.__init__\(\)$"):
        await ServiceGroup([Forgetful()]).run()


async def test_a_sync_run_once_fails_clearly(autojump_clock: trio.testing.MockClock) -> None:
    """run_once as a plain function gives a TypeError at start."""

    class Sync(LoopService):
        def run_once(self) -> None:  # type: ignore[override]
            pass

    with pytest.raises(TypeError, match=r"^Sync\.run_once\(\) must be an async function \(`async def`\), got "):
        await Sync().start()
