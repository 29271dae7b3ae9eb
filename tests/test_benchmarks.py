"""The benchmarks cannot rot: `--quick` runs every measurement for every contender once.

It asserts that they run and produce every row, never a time.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MEASUREMENTS = {"stop_latency", "cpu_per_run", "memory", "accuracy", "shutdown", "virtual_time"}
CONTENDERS = {"loopsvc-trio", "loopsvc-asyncio", "seed", "floor"}


@pytest.mark.realclock
def test_quick_benchmarks_produce_every_row(tmp_path: Path) -> None:
    """Every measurement has a row per contender, with a value or a stated n/a, and no error."""
    out = tmp_path / "quick.json"
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    rows = report["rows"]
    assert {r["measurement"] for r in rows} == MEASUREMENTS
    for measurement in MEASUREMENTS:
        labels = {r["label"] for r in rows if r["measurement"] == measurement}
        for label in labels:
            assert {
                r["contender"] for r in rows if (r["measurement"], r["label"]) == (measurement, label)
            } == CONTENDERS
    assert [r for r in rows if "error" in r["result"]] == []
    not_applicable = {(r["measurement"], r["contender"]) for r in rows if "na" in r["result"]}
    assert not_applicable == {("virtual_time", "seed"), ("virtual_time", "loopsvc-asyncio")}
    assert report["table"].startswith("| measurement | contender | result | vs floor | vs seed |")
    assert set(report["versions"]) == {"loopsvc", "trio", "anyio", "pendulum"}
