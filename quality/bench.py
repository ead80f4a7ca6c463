"""How fast is ``validate_file`` on the largest source's monthly file?

    .venv/bin/python -m quality.bench [--rows 200000] [--repeat 5]

Builds a synthetic ``attendance_daily`` month as ``_typed`` holds it (10k pupils × 20 school
days, 30 schools, statuses, the odd nurse-room day), puts it in DuckDB as the temp table
``_typed`` and measures, best of ``--repeat``:

* fetching it: ``SELECT * FROM _typed`` with ``.df()`` vs ``quality.read_typed`` (Arrow,
  strings dictionary-encoded into categoricals);
* ``validate_file`` on each of the two frames (registry, school master, export date and volume
  history all given, so every rule runs);
* the fixed cost per call: ``validate_file`` on a 10-row frame;
* a file with errors (a duplicated key, unknown pupils, an out-of-set status): the second,
  detailed GX pass included.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def attendance_month(rows: int, seed: int = 0):
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    days = pd.bdate_range("2024-05-01", "2024-05-31")[:20]
    pupils = rows // len(days) + 1
    ids = np.array([f"{i:016x}" for i in rng.integers(0, 2**63, pupils)])
    schools = np.array([f"B2112224{i:05d}" for i in range(30)])
    date = np.tile(days.values, pupils)[:rows]
    pid = np.repeat(ids, len(days))[:rows]
    status = rng.choice(["present", "absent_sick", "absent_other", "late", "early_leave"], rows,
                        p=[0.93, 0.03, 0.02, 0.01, 0.01])
    room = np.where(rng.random(rows) < 0.01, "nurse_room", None)
    frame = pd.DataFrame({
        "date": pd.to_datetime(date).astype("datetime64[us]"),
        "school_code": np.repeat(schools[rng.integers(0, 30, pupils)], len(days))[:rows],
        "pupil_id": pid, "status": status, "room": room, "sub_reason": None,
        "_line": np.arange(2, rows + 2, dtype="int32"),
        "known_date": pd.to_datetime(date).astype("datetime64[us]"), "_period": "2024-05",
    })
    frame = frame.sort_values(["date", "pupil_id"], kind="stable").reset_index(drop=True)
    frame["_line"] = np.arange(2, rows + 2, dtype="int32")
    return frame, set(ids), set(schools)


def _best(fn, repeat: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    import duckdb

    t = time.perf_counter()
    from quality import FileContext, build_suite, check_file, read_typed, validate_file
    from toda_platform.city import load_city

    spec = load_city("toda").spec("attendance_daily")
    build_suite(spec)
    print(f"import GX + build the attendance suite (cold, once per process): {time.perf_counter() - t:.2f} s")

    frame, pupils, schools = attendance_month(args.rows)
    ctx = FileContext("出欠_2024-05.csv", headers={"date": "日付", "school_code": "学校コード",
                                                  "pupil_id": "学籍番号", "status": "出欠"},
                      exported_on=dt.date(2024, 6, 1), known_pupils={2024: pupils},
                      known_residents=None, known_schools=schools,
                      previous_volumes=[args.rows] * 6)
    con = duckdb.connect()
    con.register("frame_view", frame)
    con.execute("CREATE TEMP TABLE _typed AS SELECT * FROM frame_view")
    con.unregister("frame_view")

    t_df, from_df = _best(lambda: con.execute("SELECT * FROM _typed").df(), args.repeat)
    t_arrow, from_arrow = _best(lambda: read_typed(con), args.repeat)
    v_df, failures = _best(lambda: validate_file(spec, from_df, ctx), args.repeat)
    assert failures == [], failures
    v_arrow, failures = _best(lambda: validate_file(spec, from_arrow, ctx), args.repeat)
    assert failures == [], failures
    small = from_arrow.head(10)
    small_ctx = FileContext(ctx.file_name, ctx.headers, ctx.exported_on, ctx.known_pupils, None,
                            ctx.known_schools, previous_volumes=[10, 10])
    v_small, _ = _best(lambda: validate_file(spec, small, small_ctx), args.repeat)
    parts = min((check_file(spec, from_arrow, ctx) for _ in range(args.repeat)), key=lambda r: r.seconds)

    broken = from_df.copy()
    broken.loc[100, "status"] = "bogus"
    broken.loc[200, ["pupil_id", "date"]] = broken.loc[201, ["pupil_id", "date"]].to_numpy()
    broken.loc[300:309, "pupil_id"] = "ffffffffffffffff"
    v_bad, failures = _best(lambda: validate_file(spec, broken, ctx), args.repeat)
    checks = sorted({f.check for f in failures})

    n = len(frame)
    print(f"rows: {n:,} (attendance_daily, one month)")
    print(f"fetch _typed with .df()                    : {t_df:6.3f} s")
    print(f"fetch _typed with quality.read_typed       : {t_arrow:6.3f} s")
    print(f"validate_file, frame from .df()            : {v_df:6.3f} s = {n / v_df:>12,.0f} rows/s "
          f"({v_df / n * 1e5:.3f} s per 100k rows)")
    print(f"validate_file, frame from read_typed       : {v_arrow:6.3f} s = {n / v_arrow:>12,.0f} rows/s "
          f"({v_arrow / n * 1e5:.3f} s per 100k rows)")
    print("  of which: " + ", ".join(f"{k} {v:.3f} s" for k, v in parts.timings.items())
          + f" ({parts.expectations} expectations)")
    print(f"validate_file, 10 rows (fixed cost a call) : {v_small:6.3f} s")
    print(f"validate_file, broken file (2 GX passes)   : {v_bad:6.3f} s -> {', '.join(checks)}")


if __name__ == "__main__":
    main()
