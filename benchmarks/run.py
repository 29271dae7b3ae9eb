"""loopsvc benchmarks, side by side with the seed design and the bare-Trio floor, in one run.

Contenders:
  loopsvc-trio     loopsvc on Trio (a ServiceGroup: services wait on its shared timer)
  loopsvc-asyncio  loopsvc on asyncio, through anyio
  seed             the Prefect Orion LoopService algorithm (baselines/seed.py): asyncio,
                   pendulum wall-clock schedule, stop flag polled every second, gather
  floor            bare Trio tasks looping `await trio.sleep_until(t); t += period`

Measurements (each in a fresh subprocess, so memory and CPU figures do not leak):
  stop_latency     a service waiting on a 60 s interval is asked to stop: time until its
                   start() returns (p50 / p99 / max, ms)
  cpu_per_run      process CPU seconds per run of a no-op service, loop_seconds=1, phases
                   spread over the second, measured over a fixed real-time window after warm-up
  memory           bytes per idle service (tracemalloc, and RSS delta), against bare sleeping
                   Trio tasks
  accuracy         real-clock lateness of runs at 1,000 services (p50 / p99, ms), and the drift
                   of run 1,000 of a 5 ms service against t0 + 1000 * period
  shutdown         10,000 idle services, request a stop: time until everything has returned
  virtual_time     runs per wall-clock second under Trio's autojump clock (how fast users'
                   tests run); not applicable to asyncio contenders, which have no virtual clock

Usage: python benchmarks/run.py [--quick] [--plot] [--only NAME ...]
Results print as one Markdown table and are saved to benchmarks/results/latest.json.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
import tracemalloc
from importlib import metadata
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import anyio  # noqa: E402
import trio  # noqa: E402
import trio.testing  # noqa: E402
from baselines.floor import floor_loop  # noqa: E402
from baselines.seed import SeedLoopService  # noqa: E402

import loopsvc  # noqa: E402

CONTENDERS = ("loopsvc-trio", "loopsvc-asyncio", "seed", "floor")


@dataclasses.dataclass(frozen=True)
class Sizes:
    stops: int
    cpu_services: tuple[int, ...]
    cpu_warmup: float
    cpu_window: float
    memory_services: tuple[int, ...]
    accuracy_services: int
    accuracy_window: float
    drift_runs: int
    shutdown_services: int
    virtual: tuple[tuple[int, float], ...]  # (services, virtual seconds)
    repeats: int


FULL = Sizes(
    stops=200,
    cpu_services=(1, 1_000, 10_000),
    cpu_warmup=1.0,
    cpu_window=2.0,
    memory_services=(10_000, 100_000),
    accuracy_services=1_000,
    accuracy_window=3.0,
    drift_runs=1_000,
    shutdown_services=10_000,
    virtual=((1, 86_400.0), (10_000, 600.0)),
    repeats=2,
)
QUICK = Sizes(
    stops=5,
    cpu_services=(1, 100),
    cpu_warmup=0.1,
    cpu_window=1.1,  # at least one run of the lone 1 s service
    memory_services=(200,),
    accuracy_services=20,
    accuracy_window=0.2,
    drift_runs=20,
    shutdown_services=100,
    virtual=((1, 100.0), (50, 100.0)),
    repeats=1,
)


class Noop(loopsvc.LoopService):
    """A loopsvc service whose run does nothing but count."""

    runs = 0

    async def run_once(self) -> None:
        Noop.runs += 1


class SeedNoop(SeedLoopService):
    runs = 0

    async def run_once(self) -> None:
        SeedNoop.runs += 1


def _services(n: int, period: float) -> list[Noop]:
    return [Noop(period, handle_signals=False, name=f"svc{i}", first_run_after=period * i / n) for i in range(n)]


async def _stop_seed(services: list[Any], gathered: Any) -> None:
    """Stop seed services the seed's way: set each one's flag, then wait for them to notice."""
    for service in services:
        service._should_stop = True
    await gathered


def _backend(contender: str) -> str:
    return "asyncio" if contender == "loopsvc-asyncio" else "trio"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


# Workers: each runs one measurement for one contender and returns a dict.


def stop_latency(contender: str, stops: int) -> dict[str, Any]:
    latencies: list[float] = []
    if contender.startswith("loopsvc"):

        async def one() -> None:
            service = Noop(60, handle_signals=False)
            done: list[float] = []

            async def runner(*, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
                await service.start(task_status=task_status)
                done.append(time.perf_counter())

            async with anyio.create_task_group() as tg:
                await tg.start(runner)
                await anyio.sleep(0.002)
                asked = time.perf_counter()
                service.request_stop()
            latencies.append(done[0] - asked)

        async def many() -> None:
            for _ in range(stops):
                await one()

        anyio.run(many, backend=_backend(contender))
    elif contender == "seed":
        # Stopping one at a time would take up to a second each: the services run together,
        # started at staggered instants so each polls its flag at its own phase.
        async def seed_main() -> None:
            services = [SeedNoop(60, handle_signals=False) for _ in range(stops)]
            done: dict[int, float] = {}

            async def runner(i: int, service: SeedNoop) -> None:
                await asyncio.sleep(i / stops)
                await service.start()
                done[i] = time.perf_counter()

            tasks = [asyncio.create_task(runner(i, s)) for i, s in enumerate(services)]
            await asyncio.sleep(1.2)
            asked = time.perf_counter()
            for service in services:
                service._should_stop = True
            await asyncio.gather(*tasks)
            latencies.extend(done[i] - asked for i in range(stops))

        asyncio.run(seed_main())
    else:

        async def floor_main() -> None:
            for _ in range(stops):
                done: list[float] = []

                async def runner(scope: trio.CancelScope, done: list[float] = done) -> None:
                    with scope:
                        await floor_loop(60, 0, lambda _: None)
                    done.append(time.perf_counter())

                scope = trio.CancelScope()
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(runner, scope)
                    await trio.sleep(0.002)
                    asked = time.perf_counter()
                    scope.cancel()
                latencies.append(done[0] - asked)

        trio.run(floor_main)
    ms = [x * 1000 for x in latencies]
    return {"p50_ms": percentile(ms, 0.5), "p99_ms": percentile(ms, 0.99), "max_ms": max(ms), "samples": ms}


def cpu_per_run(contender: str, n: int, warmup: float, window: float) -> dict[str, Any]:
    result: dict[str, float] = {}

    def measure_start() -> None:
        result["c0"], result["r0"] = time.process_time(), _runs(contender)

    def measure_end() -> None:
        result["cpu"] = time.process_time() - result["c0"]
        result["runs"] = _runs(contender) - result["r0"]

    if contender.startswith("loopsvc"):

        async def main() -> None:
            group = loopsvc.ServiceGroup(_services(n, 1.0), handle_signals=False)
            async with anyio.create_task_group() as tg:
                await tg.start(group.run)
                await anyio.sleep(warmup)
                measure_start()
                await anyio.sleep(window)
                measure_end()
                group.request_stop()

        anyio.run(main, backend=_backend(contender))
    elif contender == "seed":

        async def seed_main() -> None:
            services = [SeedNoop(1, handle_signals=False) for _ in range(n)]

            async def staggered(i: int, service: SeedNoop) -> None:
                await asyncio.sleep(i / n)
                await service.start()

            gathered = asyncio.gather(*(staggered(i, s) for i, s in enumerate(services)))
            await asyncio.sleep(warmup + 1)
            measure_start()
            await asyncio.sleep(window)
            measure_end()
            await _stop_seed(services, gathered)

        asyncio.run(seed_main())
    else:
        counter = [0]

        def count(_: float) -> None:
            counter[0] += 1

        FLOOR_RUNS[0] = counter

        async def floor_main() -> None:
            async with trio.open_nursery() as nursery:
                for i in range(n):
                    nursery.start_soon(floor_loop, 1.0, i / n, count)
                await trio.sleep(warmup)
                measure_start()
                await trio.sleep(window)
                measure_end()
                nursery.cancel_scope.cancel()

        trio.run(floor_main)
    if not result["runs"]:
        msg = f"no run in a {window} s window"
        raise RuntimeError(msg)
    return {"us_per_run": result["cpu"] / result["runs"] * 1e6, "runs": result["runs"], "services": n}


FLOOR_RUNS: list[list[int]] = [[0]]


def _runs(contender: str) -> int:
    if contender.startswith("loopsvc"):
        return Noop.runs
    if contender == "seed":
        return SeedNoop.runs
    return FLOOR_RUNS[0][0]


def _rss() -> int:
    with Path("/proc/self/statm").open() as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def memory(contender: str, n: int, mode: str) -> dict[str, Any]:
    """Bytes per idle service (waiting on a one-hour interval), by tracemalloc or RSS."""
    box: dict[str, float] = {}

    def before() -> None:
        gc.collect()
        if mode == "tracemalloc":
            tracemalloc.start()
            box["m0"] = tracemalloc.get_traced_memory()[0]
        box["rss0"] = _rss()

    def after() -> None:
        gc.collect()
        if mode == "tracemalloc":
            box["bytes"] = (tracemalloc.get_traced_memory()[0] - box["m0"]) / n
            tracemalloc.stop()
        else:
            box["bytes"] = (_rss() - box["rss0"]) / n

    if contender.startswith("loopsvc"):

        async def main() -> None:
            before()
            group = loopsvc.ServiceGroup(_services(n, 3600.0), handle_signals=False)
            async with anyio.create_task_group() as tg:
                await tg.start(group.run)
                await anyio.sleep(0.2)
                after()
                group.request_stop()

        anyio.run(main, backend=_backend(contender))
    elif contender == "seed":

        async def seed_main() -> None:
            before()
            services = [SeedNoop(3600, handle_signals=False) for _ in range(n)]
            gathered = asyncio.gather(*(s.start() for s in services))
            await asyncio.sleep(0.2)
            after()
            await _stop_seed(services, gathered)

        asyncio.run(seed_main())
    else:

        async def floor_main() -> None:
            before()
            async with trio.open_nursery() as nursery:
                for i in range(n):
                    nursery.start_soon(floor_loop, 3600.0, 3600.0 * i / n, lambda _: None)
                await trio.sleep(0.2)
                after()
                nursery.cancel_scope.cancel()

        trio.run(floor_main)
    return {"bytes_per_service": box["bytes"], "services": n, "mode": mode}


def accuracy(contender: str, n: int, window: float, drift_runs: int) -> dict[str, Any]:
    """Lateness of each run against its own intended start, and drift over `drift_runs` runs."""
    period = 0.1
    lateness: list[float] = []
    starts: list[float] = []
    measuring = [False]

    if contender.startswith("loopsvc"):

        class Late(loopsvc.LoopService):
            async def run_once(self) -> None:
                run = self.current_run
                if measuring[0] and run is not None:
                    lateness.append(run.late_seconds)

        class Stamp(loopsvc.LoopService):
            async def run_once(self) -> None:
                starts.append(time.perf_counter())

        async def main() -> None:
            late = [Late(period, handle_signals=False, name=f"l{i}", first_run_after=period * i / n) for i in range(n)]
            group = loopsvc.ServiceGroup(late, handle_signals=False)
            async with anyio.create_task_group() as tg:
                await tg.start(group.run)
                await anyio.sleep(0.5)
                measuring[0] = True
                await anyio.sleep(window)
                measuring[0] = False
                group.request_stop()
            await loopsvc.run_services([Stamp(0.005, handle_signals=False)], handle_signals=False, loops=drift_runs + 1)

        anyio.run(main, backend=_backend(contender))
    elif contender == "seed":

        class SeedLate(SeedLoopService):
            last: float | None = None

            async def run_once(self) -> None:
                now = time.perf_counter()
                if measuring[0] and self.last is not None:
                    lateness.append(max(0.0, now - (self.last + self.loop_seconds)))
                self.last = now

        class SeedStamp(SeedLoopService):
            async def run_once(self) -> None:
                starts.append(time.perf_counter())

        async def seed_main() -> None:
            services = [SeedLate(period, handle_signals=False) for _ in range(n)]

            async def staggered(i: int, service: SeedLate) -> None:
                await asyncio.sleep(period * i / n)
                await service.start()

            gathered = asyncio.gather(*(staggered(i, s) for i, s in enumerate(services)))
            await asyncio.sleep(0.5)
            measuring[0] = True
            await asyncio.sleep(window)
            measuring[0] = False
            await _stop_seed(services, gathered)
            await SeedStamp(0.005, handle_signals=False).start(loops=drift_runs + 1)

        asyncio.run(seed_main())
    else:

        def late(slot: float) -> None:
            if measuring[0]:
                lateness.append(trio.current_time() - slot)

        async def floor_main() -> None:
            async with trio.open_nursery() as nursery:
                for i in range(n):
                    nursery.start_soon(floor_loop, period, period * i / n, late)
                await trio.sleep(0.5)
                measuring[0] = True
                await trio.sleep(window)
                measuring[0] = False
                nursery.cancel_scope.cancel()
            with trio.move_on_after(3600):
                async with trio.open_nursery() as nursery:

                    def stamp(_: float) -> None:
                        starts.append(time.perf_counter())
                        if len(starts) > drift_runs:
                            nursery.cancel_scope.cancel()

                    nursery.start_soon(floor_loop, 0.005, 0, stamp)

        trio.run(floor_main)
    ms = [x * 1000 for x in lateness]
    drift = starts[drift_runs] - (starts[0] + drift_runs * 0.005)
    return {"p50_ms": percentile(ms, 0.5), "p99_ms": percentile(ms, 0.99), "drift_ms": drift * 1000, "services": n}


def shutdown(contender: str, n: int) -> dict[str, Any]:
    box: dict[str, float] = {}
    if contender.startswith("loopsvc"):

        async def main() -> None:
            group = loopsvc.ServiceGroup(_services(n, 3600.0), handle_signals=False)
            async with anyio.create_task_group() as tg:
                await tg.start(group.run)
                await anyio.sleep(0.3)
                box["t0"] = time.perf_counter()
                group.request_stop()
            box["t1"] = time.perf_counter()

        anyio.run(main, backend=_backend(contender))
    elif contender == "seed":

        async def seed_main() -> None:
            services = [SeedNoop(3600, handle_signals=False) for _ in range(n)]
            gathered = asyncio.gather(*(s.start() for s in services))
            await asyncio.sleep(0.3)
            box["t0"] = time.perf_counter()
            await _stop_seed(services, gathered)
            box["t1"] = time.perf_counter()

        asyncio.run(seed_main())
    else:

        async def floor_main() -> None:
            async with trio.open_nursery() as nursery:
                for i in range(n):
                    nursery.start_soon(floor_loop, 3600.0, 3600.0 * i / n, lambda _: None)
                await trio.sleep(0.3)
                box["t0"] = time.perf_counter()
                nursery.cancel_scope.cancel()
            box["t1"] = time.perf_counter()

        trio.run(floor_main)
    return {"ms": (box["t1"] - box["t0"]) * 1000, "services": n}


def virtual_time(contender: str, n: int, seconds: float) -> dict[str, Any]:
    if contender in {"seed", "loopsvc-asyncio"}:
        return {"na": "no virtual clock: " + ("it reads the wall clock" if contender == "seed" else "asyncio")}
    period = 1.0 if n == 1 else 60.0
    counter = [0]

    async def main() -> None:
        if contender == "loopsvc-trio":
            Noop.runs = 0
            with trio.move_on_after(seconds):
                await loopsvc.ServiceGroup(_services(n, period), handle_signals=False).run()
            counter[0] = Noop.runs
        else:

            def count(_: float) -> None:
                counter[0] += 1

            with trio.move_on_after(seconds):
                async with trio.open_nursery() as nursery:
                    for i in range(n):
                        nursery.start_soon(floor_loop, period, period * i / n, count)

    began = time.perf_counter()
    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    wall = time.perf_counter() - began
    return {"runs_per_s": counter[0] / wall, "runs": counter[0], "services": n, "wall_s": wall}


WORKERS = {
    "stop_latency": stop_latency,
    "cpu_per_run": cpu_per_run,
    "memory": memory,
    "accuracy": accuracy,
    "shutdown": shutdown,
    "virtual_time": virtual_time,
}


# The driver.


@dataclasses.dataclass
class Job:
    measurement: str
    label: str
    args: list[Any]


def jobs(sizes: Sizes) -> list[Job]:
    out: list[Job] = [Job("stop_latency", "", [sizes.stops])]
    out += [Job("cpu_per_run", f"N={n:,}", [n, sizes.cpu_warmup, sizes.cpu_window]) for n in sizes.cpu_services]
    for n in sizes.memory_services:
        out += [Job("memory", f"N={n:,} {mode}", [n, mode]) for mode in ("tracemalloc", "rss")]
    out.append(
        Job(
            "accuracy",
            f"N={sizes.accuracy_services:,}",
            [sizes.accuracy_services, sizes.accuracy_window, sizes.drift_runs],
        )
    )
    out.append(Job("shutdown", f"N={sizes.shutdown_services:,}", [sizes.shutdown_services]))
    out += [Job("virtual_time", f"N={n:,}", [n, s]) for n, s in sizes.virtual]
    return out


def run_worker(measurement: str, contender: str, args: list[Any]) -> dict[str, Any]:
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps([measurement, contender, args])]
    done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=900)
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


HEADLINE = {
    "stop_latency": ("p99_ms", "p99 {p99_ms:.3f} ms (p50 {p50_ms:.3f}, max {max_ms:.3f})"),
    "cpu_per_run": ("us_per_run", "{us_per_run:.2f} µs/run"),
    "memory": ("bytes_per_service", "{bytes_per_service:,.0f} B/service"),
    "accuracy": ("p99_ms", "lateness p99 {p99_ms:.3f} ms (p50 {p50_ms:.3f}); drift at run 1,000 {drift_ms:+.2f} ms"),
    "shutdown": ("ms", "{ms:.1f} ms"),
    "virtual_time": ("runs_per_s", "{runs_per_s:,.0f} runs/s"),
}


def _median_result(results: list[dict[str, Any]], key: str) -> dict[str, Any]:
    good = [r for r in results if key in r]
    if not good:
        return results[0]
    value = statistics.median(r[key] for r in good)
    return min(good, key=lambda r: abs(r[key] - value))


def _ratio(value: float | None, base: float | None) -> str:
    if value is None or base is None or base == 0:
        return "-"
    return f"{value / base:.2f}x"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, a few seconds: checks the benchmarks run")
    parser.add_argument("--plot", action="store_true", help="also save a PNG (needs matplotlib)")
    parser.add_argument("--only", nargs="*", choices=sorted(WORKERS), help="run only these measurements")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "latest.json")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        measurement, contender, worker_args = json.loads(args.worker)
        print(json.dumps(WORKERS[measurement](contender, *worker_args)))
        return 0
    sizes = QUICK if args.quick else FULL
    todo = [job for job in jobs(sizes) if not args.only or job.measurement in args.only]
    rows: list[dict[str, Any]] = []
    total = len(todo) * len(CONTENDERS)
    step = 0
    for job in todo:
        repeats = sizes.repeats if job.measurement == "cpu_per_run" else 1
        per_contender: dict[str, list[dict[str, Any]]] = {c: [] for c in CONTENDERS}
        for _ in range(repeats):  # interleaved, so a noisy moment does not favour one contender
            for contender in CONTENDERS:
                per_contender[contender].append(run_worker(job.measurement, contender, job.args))
        for contender in CONTENDERS:
            step += 1
            key = HEADLINE[job.measurement][0]
            result = _median_result(per_contender[contender], key)
            rows.append({"measurement": job.measurement, "label": job.label, "contender": contender, "result": result})
            shown = _describe(job.measurement, result)
            print(f"[{step}/{total}] {job.measurement} {job.label} {contender}: {shown}", file=sys.stderr, flush=True)
    table = markdown_table(rows)
    print(table)
    report = {
        "quick": args.quick,
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
        },
        "versions": {name: metadata.version(name) for name in ("loopsvc", "trio", "anyio", "pendulum")},
        "rows": rows,
        "table": table,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    if args.plot:
        plot(rows, args.out.with_suffix(".png"))
    return 0


def _describe(measurement: str, result: dict[str, Any]) -> str:
    if "error" in result:
        return f"failed: {result['error']}"
    if "na" in result:
        return f"n/a ({result['na']})"
    return HEADLINE[measurement][1].format(**result)


def markdown_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| measurement | contender | result | vs floor | vs seed |", "|---|---|---|---|---|"]
    for row in rows:
        key = HEADLINE[row["measurement"]][0]
        same = [r for r in rows if r["measurement"] == row["measurement"] and r["label"] == row["label"]]
        base = {r["contender"]: r["result"].get(key) for r in same}
        value = row["result"].get(key)
        name = f"{row['measurement']} {row['label']}".strip()
        lines.append(
            f"| {name} | {row['contender']} | {_describe(row['measurement'], row['result'])} "
            f"| {_ratio(value, base.get('floor'))} | {_ratio(value, base.get('seed'))} |"
        )
    return "\n".join(lines)


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib as mpl  # noqa: PLC0415 (only in the bench session's environment)

    mpl.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    for row in rows:
        if row["measurement"] == "stop_latency" and "samples" in row["result"]:
            samples = sorted(max(x, 1e-4) for x in row["result"]["samples"])
            left.plot(samples, [(i + 1) / len(samples) for i in range(len(samples))], label=row["contender"])
    left.set(xscale="log", xlabel="stop latency (ms)", ylabel="fraction of stops", title="Stop latency (ECDF)")
    left.legend()
    for contender in CONTENDERS:
        points = [
            (r["result"]["services"], r["result"]["us_per_run"])
            for r in rows
            if r["measurement"] == "cpu_per_run" and r["contender"] == contender and "us_per_run" in r["result"]
        ]
        if points:
            right.plot(*zip(*points, strict=True), marker="o", label=contender)
    right.set(xscale="log", yscale="log", xlabel="services", ylabel="CPU µs per run", title="CPU per run")
    right.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)


if __name__ == "__main__":
    raise SystemExit(main())
