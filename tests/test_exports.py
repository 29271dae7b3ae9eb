"""The public API surface: what `loopsvc` exports, and nothing private leaks."""

from __future__ import annotations

import loopsvc
import loopsvc.testing


def test_public_names_are_exactly_these() -> None:
    """`loopsvc.__all__` is the public API; every name in it exists."""
    assert sorted(loopsvc.__all__) == [
        "CurrentRun",
        "LoopService",
        "ServiceGroup",
        "ServiceState",
        "ServiceStats",
        "__version__",
        "run_multiple_services",
        "run_services",
    ]
    for name in loopsvc.__all__:
        assert hasattr(loopsvc, name)


def test_exported_classes_say_they_come_from_loopsvc() -> None:
    """Public classes live in private modules but are imported from `loopsvc` only."""
    for name in ("LoopService", "ServiceGroup", "ServiceStats"):
        assert getattr(loopsvc, name).__module__.startswith("loopsvc._")


def test_testing_exports() -> None:
    """`loopsvc.testing` exports its tools and the types they return."""
    assert sorted(loopsvc.testing.__all__) == [
        "Outcome",
        "Report",
        "RunRecord",
        "ServiceReport",
        "assert_schedule",
        "run_for",
    ]
    for name in loopsvc.testing.__all__:
        assert hasattr(loopsvc.testing, name)
