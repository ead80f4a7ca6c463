"""Three cities of one deployment refreshed side by side against one after another.

    .venv/bin/python bench/multicity.py [--root DIR] [--scales 0.3,1,2] [--years 6]
                                        [--memory-limit 4GB] [--out FILE]

Generates one synthetic city per scale (pupils and schools × the scale of Toda's defaults:
12,000 pupils, 12 + 6 schools) as the homes of a deployment (``cities/<name>/``), then refreshes
them (each city's nightly job of the deployment's code location, ``toda deployment refresh``,
one process per city as the daemon launches runs) from the same freshly generated landing
files twice, each time in a fresh copy:

* **sequential**: one city after another;
* **parallel**: all cities at once (what the run queue allows: one writer per city).

Prints the wall time and CPU seconds of each city's refresh in both modes, the totals and their
ratio, the machine's busy CPU seconds in each mode (so other programs' share shows), each
refresh's peak resident memory (its own process, from ``wait4``) and the machine's peak memory
in use above its level at the start of the mode (sampled from /proc/meminfo every 0.2 s — it
counts every other program's memory too: meaningful on a quiet machine only).
Each city's DuckDB gets ``--memory-limit`` (``TODA_DUCKDB_MEMORY_LIMIT``) in both modes, as a
deployment would set it: DuckDB's default (80 % of the machine's memory, for each process) would let
three cities side by side claim 2.4 times the machine.
Generation is not timed. Run it on a quiet machine: CPU and memory are shared by everything.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BASE = {"pupils": 12_000, "elementary_schools": 12, "junior_high_schools": 6}  # Toda's defaults


def city_name(scale: float) -> str:
    return f"x{round(scale * 100):03d}"  # x030, x100, x200: valid deployment city names


def city_args(scale: float, years: int, seed: int) -> list[str]:
    return ["--pupils", str(max(60, round(BASE["pupils"] * scale))),
            "--elementary-schools", str(max(1, round(BASE["elementary_schools"] * scale))),
            "--junior-high-schools", str(max(1, round(BASE["junior_high_schools"] * scale))),
            "--years", str(years), "--seed", str(seed)]


def toda(*args: str) -> list[str]:
    return [str(Path(sys.executable).parent / "toda"), *args]


def memory_in_use_mb() -> float:
    info = {}
    for line in Path("/proc/meminfo").read_text().splitlines():
        key, value = line.split(":", 1)
        info[key] = int(value.split()[0])
    return (info["MemTotal"] - info["MemAvailable"]) / 1024


def machine_cpu_seconds() -> float:
    """CPU seconds the whole machine has spent busy since boot (every program: /proc/stat)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


class MemorySampler:
    """The machine's peak memory in use while a block runs, above its level at the start; and
    the machine's busy CPU seconds meanwhile (beside the refreshes' own: what else ran)."""

    def __init__(self, every: float = 0.2):
        self.every, self.peak, self._stop = every, 0.0, threading.Event()

    def __enter__(self):
        self.start = memory_in_use_mb()
        self.peak = self.start
        self.cpu_start = machine_cpu_seconds()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.wait(self.every):
            self.peak = max(self.peak, memory_in_use_mb())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.machine_cpu = machine_cpu_seconds() - self.cpu_start

    @property
    def above_idle_mb(self) -> float:
        return self.peak - self.start


def start_refresh(deployment: Path, city: str, log: Path, memory_limit: str) -> tuple[subprocess.Popen, float]:
    env = {**os.environ, "TODA_DEPLOYMENT": str(deployment), "TODA_SETTLE_SECONDS": "0",
           "TODA_DUCKDB_MEMORY_LIMIT": memory_limit}
    env.pop("TODA_HOME", None)
    out = log.open("w", encoding="utf-8")
    return subprocess.Popen(toda("deployment", "refresh", "--deployment", str(deployment), city),
                            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT), time.perf_counter()


def wait(proc: subprocess.Popen, started: float) -> dict:
    """Wall seconds, exit code and peak RSS of this one child (wait4 gives its own rusage)."""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return {"seconds": round(time.perf_counter() - started, 1), "exit": proc.returncode,
            "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 1),
            "peak_rss_mb": round(usage.ru_maxrss / 1024)}  # kilobytes on Linux


def fresh_copy(generated: Path, target: Path, cities: list[str]) -> Path:
    """A deployment holding copies of the generated homes (landing, truth, key): same start."""
    if target.exists():
        shutil.rmtree(target)
    for city in cities:
        shutil.copytree(generated / "cities" / city, target / "cities" / city)
    return target


def run_mode(mode: str, deployment: Path, cities: list[str], logs: Path, memory_limit: str) -> dict:
    results, began = {}, time.perf_counter()
    with MemorySampler() as memory:
        if mode == "sequential":
            for city in cities:
                proc, started = start_refresh(deployment, city, logs / f"{mode}-{city}.log", memory_limit)
                results[city] = wait(proc, started)
        else:  # each child waited for in its own thread: its own end time, whichever ends first
            running = [(city, *start_refresh(deployment, city, logs / f"{mode}-{city}.log", memory_limit)) for city in cities]
            threads = [threading.Thread(target=lambda c=c, p=p, t=t: results.__setitem__(c, wait(p, t)))
                       for c, p, t in running]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
    return {"cities": results, "total_seconds": round(time.perf_counter() - began, 1),
            "cpu_seconds": round(sum(r["cpu_seconds"] for r in results.values()), 1),
            "machine_cpu_seconds": round(memory.machine_cpu, 1),
            "machine_peak_above_idle_mb": round(memory.above_idle_mb)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", default=None, help="work folder (default: a temporary one, removed after)")
    parser.add_argument("--scales", default="0.3,1,2", help="city sizes as multiples of Toda")
    parser.add_argument("--years", type=int, default=6, help="school years of history of each city")
    parser.add_argument("--memory-limit", default="4GB", help="each city's DuckDB memory limit")
    parser.add_argument("--out", default=None, help="also write the figures to this JSON file")
    args = parser.parse_args()
    scales = [float(s) for s in args.scales.split(",")]
    os.environ.setdefault("TODA_DEMO", "1")  # synthetic cities: each gets its own demo key

    from toda_platform.deployment import Deployment
    from toda_platform.pseudonym import load_key

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.root or tmp).resolve()
        generated = Deployment.from_env(work / "generated")
        cities = []
        for i, scale in enumerate(scales):
            name = city_name(scale)
            paths = generated.add_city(name)
            cities.append(name)
            if not paths.landing.exists():
                print(f"generating {name} ({' '.join(city_args(scale, args.years, 20261 + i))}) …", flush=True)
                subprocess.run(toda("generate", "--home", str(paths.home), "--quiet",
                                    *city_args(scale, args.years, 20261 + i)), check=True, cwd=ROOT)
            load_key(paths.pseudonym_key_file, create=True)
        logs = work / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        figures = {"scales": dict(zip(cities, scales)), "cpus": os.cpu_count(),
                   "duckdb_memory_limit": args.memory_limit}
        for mode in ("sequential", "parallel"):
            deployment = fresh_copy(generated.root, work / mode, cities)
            print(f"{mode}: refreshing {', '.join(cities)} …", flush=True)
            figures[mode] = run_mode(mode, deployment, cities, logs, args.memory_limit)
        seq, par = figures["sequential"], figures["parallel"]
        figures["ratio_sequential_over_parallel"] = round(seq["total_seconds"] / par["total_seconds"], 2)
        print(f"\n{'city':8} {'scale':>5} {'seq s':>8} {'par s':>8} {'seq CPU s':>10} {'par CPU s':>10} "
              f"{'seq RSS MB':>11} {'par RSS MB':>11}")
        for city in cities:
            s, p = seq["cities"][city], par["cities"][city]
            print(f"{city:8} {figures['scales'][city]:>5} {s['seconds']:>8} {p['seconds']:>8} "
                  f"{s['cpu_seconds']:>10} {p['cpu_seconds']:>10} {s['peak_rss_mb']:>11} {p['peak_rss_mb']:>11}"
                  + ("" if s["exit"] == p["exit"] == 0 else f"  (exit {s['exit']}/{p['exit']}: see {logs})"))
        print(f"total: sequential {seq['total_seconds']} s, parallel {par['total_seconds']} s, "
              f"ratio {figures['ratio_sequential_over_parallel']} on {figures['cpus']} CPUs")
        for mode in ("sequential", "parallel"):
            m = figures[mode]
            print(f"{mode}: the refreshes used {m['cpu_seconds']} CPU s of the machine's {m['machine_cpu_seconds']} "
                  f"busy CPU s in {m['total_seconds']} s of wall (anything beyond theirs was other programs)")
        print(f"machine memory in use above idle, peak: sequential {seq['machine_peak_above_idle_mb']} MB, "
              f"parallel {par['machine_peak_above_idle_mb']} MB")
        if args.out:
            Path(args.out).write_text(json.dumps(figures, indent=2), encoding="utf-8")
        failed = [c for m in ("sequential", "parallel") for c, r in figures[m]["cities"].items() if r["exit"]]
        if failed:
            sys.exit(f"refresh failed: {failed} (logs in {logs})")


if __name__ == "__main__":
    main()
