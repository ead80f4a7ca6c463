"""How long, and how much memory, to build every as-of date of the integrated pupil table (and
the labels) — on the default city and on a city with ten times the pupils?

    .venv/bin/python bench/features.py [--warehouse .toda/warehouse.duckdb] [--factor 10]

Needs a materialised warehouse (``toda demo``); it is copied, never written. The big city is made
inside DuckDB, not from CSVs: every pupil-level staging table is replicated ``--factor`` times
with re-keyed pupil, resident, incident, session and case ids (same schools, same calendar, so the
schools are ten times larger and the number of as-of dates is the same).

Each build runs in a fresh subprocess that calls ``ml.features.build_features`` and
``ml.labels.build_labels`` for every as-of date. Reported per city:

* wall seconds and CPU seconds (user + system of the process; on a shared machine CPU time is
  the steadier figure);
* peak resident set size of the process (``getrusage(RUSAGE_SELF).ru_maxrss``): this includes
  DuckDB's native allocations, which tracemalloc cannot see;
* peak of DuckDB's own buffer-manager memory, sampled from ``duckdb_memory()`` every 0.2 s on a
  second cursor;
* peak bytes spilled to disk: the largest sum of ``duckdb_temporary_files()`` sizes seen by the
  same sampler (0 when everything fitted in memory).

The connection is opened by ``toda_platform.warehouse.connect``, as the Dagster assets open it:
DuckDB's memory limit and threads come from ``--memory-limit`` / ``--threads`` (defaults:
``TODA_DUCKDB_MEMORY_LIMIT`` / ``TODA_DUCKDB_THREADS``, unset = DuckDB's own defaults) and it
spills to ``<copy>.duckdb.tmp/`` beside the copy. The settings in force are reported.

Prints the ratio big/default of each (target for time: ≤ 11 for a 10× city).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# id columns re-keyed in the replicas (resident ids link infant checkups and nursery records)
REKEY = ("pupil_id", "resident_id", "incident_id", "session_id", "case_id")


def make_big(src: Path, dst: Path, factor: int) -> dict:
    """Copy ``src`` to ``dst`` and replicate its pupil-level staging tables ``factor`` times."""
    import duckdb

    from toda_platform.catalogue import CATALOGUE

    shutil.copyfile(src, dst)
    started = time.perf_counter()
    con = duckdb.connect(str(dst))
    counts = {}
    for key, spec in CATALOGUE.items():
        cols = [c.staged_name for c in spec.staged_columns]
        rekey = [c for c in REKEY if c in cols]
        if spec.grain != "pupil" or not rekey:
            continue
        replace = ", ".join(f"CASE WHEN k = 0 THEN {c} ELSE {c} || '~' || k END AS {c}" for c in rekey)
        # each row followed by its replicas: the table keeps the date order ingestion gave it
        con.execute(f"CREATE TABLE staging._big AS SELECT * EXCLUDE (k) REPLACE ({replace}) "
                    f"FROM staging.{key}, (SELECT range AS k FROM range({factor})) ")
        con.execute(f"DROP TABLE staging.{key}")
        con.execute(f"ALTER TABLE staging._big RENAME TO {key}")
        counts[key] = con.execute(f"SELECT count(*) FROM staging.{key}").fetchall()[0][0]
    con.execute("CHECKPOINT")
    con.close()
    return {"seconds": round(time.perf_counter() - started, 1), "rows": counts}


def build(warehouse: str) -> dict:
    """Run in the subprocess: build every as-of date; report time, memory and spilling."""
    import resource
    import threading

    from ml import asof, features, labels
    from toda_platform.warehouse import connect

    con = connect(warehouse)
    limit, threads, temp_dir = con.execute(
        "SELECT current_setting('memory_limit'), current_setting('threads'), "
        "current_setting('temp_directory')").fetchall()[0]
    peak = {"duckdb_bytes": 0, "spilled_bytes": 0}
    stop = threading.Event()

    def sample():
        cur = con.cursor()
        while not stop.is_set():
            try:
                used, spilled = cur.execute(
                    "SELECT (SELECT sum(memory_usage_bytes) FROM duckdb_memory()), "
                    "(SELECT sum(size) FROM duckdb_temporary_files())").fetchall()[0]
                peak["duckdb_bytes"] = max(peak["duckdb_bytes"], int(used or 0))
                peak["spilled_bytes"] = max(peak["spilled_bytes"], int(spilled or 0))
            except Exception:  # noqa: BLE001 - sampling must never break the build
                pass
            stop.wait(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    dates = asof.as_of_dates(con)
    t0, c0 = time.perf_counter(), os.times()
    report = features.build_features(con, dates)
    t1, c1 = time.perf_counter(), os.times()
    counts = labels.build_labels(con, dates)
    t2, c2 = time.perf_counter(), os.times()
    stop.set()
    sampler.join()
    pupils = con.execute("SELECT count(DISTINCT pupil_id) FROM staging.pupil_registry").fetchall()[0][0]
    con.close()
    cpu = lambda a, b: (b.user - a.user) + (b.system - a.system)  # noqa: E731
    return {
        "pupils": pupils,
        "as_of_dates": len(dates),
        "feature_rows": sum(report.rows.values()),
        "feature_columns": report.columns,
        "label_rows": sum(c["cohort"] + c["known_cases"] for c in counts.values()),
        "features_seconds": round(t1 - t0, 1),
        "labels_seconds": round(t2 - t1, 1),
        "total_seconds": round(t2 - t0, 1),
        "features_cpu_seconds": round(cpu(c0, c1), 1),
        "total_cpu_seconds": round(cpu(c0, c2), 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "peak_duckdb_mb": round(peak["duckdb_bytes"] / 2**20),
        "peak_spilled_mb": round(peak["spilled_bytes"] / 2**20),
        "memory_limit": limit,
        "threads": int(threads),
        "temp_directory": temp_dir,
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def engine_env(memory_limit: str | None, threads: str | None) -> dict[str, str]:
    """The child's environment: the settings ``warehouse.connect`` reads, as given."""
    from toda_platform.warehouse import MEMORY_ENV, THREADS_ENV

    env = dict(os.environ)
    for key, value in ((MEMORY_ENV, memory_limit), (THREADS_ENV, threads)):
        if value:
            env[key] = value
        else:
            env.pop(key, None)
    return env


def run_child(warehouse: Path, env: dict[str, str]) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", str(warehouse)], capture_output=True,
                         text=True, cwd=ROOT, env=env)
    if out.returncode != 0:
        raise SystemExit(out.stderr)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--warehouse", default=os.path.join(os.environ.get("TODA_HOME", ".toda"), "warehouse.duckdb"))
    parser.add_argument("--factor", type=int, default=10)
    parser.add_argument("--memory-limit", default=os.environ.get("TODA_DUCKDB_MEMORY_LIMIT"),
                        help="DuckDB memory limit, e.g. 4GB (default: $TODA_DUCKDB_MEMORY_LIMIT, else DuckDB's)")
    parser.add_argument("--threads", default=os.environ.get("TODA_DUCKDB_THREADS"),
                        help="DuckDB threads (default: $TODA_DUCKDB_THREADS, else one per core)")
    parser.add_argument("--keep", help="folder to keep the copies in (default: a temp folder, removed)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(build(args.child)))
        return

    src = Path(args.warehouse)
    if not src.exists():
        raise SystemExit(f"no warehouse at {src}: run `toda demo` first (or pass --warehouse)")
    work = Path(args.keep or tempfile.mkdtemp(prefix="bench_features_"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        base = work / "default.duckdb"
        shutil.copyfile(src, base)
        print(f"default city: {src} (copied)", flush=True)
        env = engine_env(args.memory_limit, args.threads)
        small = run_child(base, env)
        print(json.dumps(small, indent=1), flush=True)
        big_path = work / f"x{args.factor}.duckdb"
        made = make_big(src, big_path, args.factor)
        print(f"{args.factor}x city made in DuckDB in {made['seconds']} s: "
              f"attendance {made['rows'].get('attendance_daily', 0):,} rows", flush=True)
        big = run_child(big_path, env)
        print(json.dumps(big, indent=1), flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    def ratio(key):
        return big[key] / small[key] if small[key] else float("nan")

    print()
    print(f"{'':28}{'default':>12}{f'{args.factor}x':>12}{'ratio':>8}")
    for key, label in (("pupils", "pupils"), ("feature_rows", "feature rows"),
                       ("total_seconds", "wall seconds (all)"), ("features_seconds", "  of which features"),
                       ("total_cpu_seconds", "CPU seconds (all)"), ("peak_rss_mb", "peak RSS MB"),
                       ("peak_duckdb_mb", "peak DuckDB MB"), ("peak_spilled_mb", "peak spilled MB")):
        print(f"{label:28}{small[key]:>12,}{big[key]:>12,}{ratio(key):>8.2f}")
    print(f"DuckDB memory limit {big['memory_limit']}, {big['threads']} threads, spilling to {big['temp_directory']}")
    verdict = "meets" if ratio("total_seconds") <= 11 else "misses"
    print(f"\ntime ratio {ratio('total_seconds'):.2f} (CPU {ratio('total_cpu_seconds'):.2f}) "
          f"for {args.factor}x the pupils: {verdict} the target of <= 11")


if __name__ == "__main__":
    main()
