"""School portal speed at Toda scale (issue 10).

Builds a synthetic warehouse of Toda's size straight in DuckDB (12,000 pupils in 18 schools,
a school year of daily attendance to early November and mood check-ins, nurse visits, Q-U, a
published risk list and the one before it, known cases), publishes its serving snapshot,
starts ``toda portal`` (waitress, 8 threads) on it, signs in 20 principals and lets them read
the school list and pupil pages concurrently. Prints p50/p95 page latency per page type, and
the time from a newly published list (snapshot build included) to the portal showing it.

    .venv/bin/python bench/portal.py [--users 20] [--seconds 30]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import date
from pathlib import Path

import duckdb
import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ml.scoring import KNOWN_CASES_DDL, RISK_SCORES_DDL  # noqa: E402
from toda_platform.catalogue import CATALOGUE  # noqa: E402
from toda_platform.ingest import ensure_base_schema, ensure_table  # noqa: E402
from toda_platform.settings import Paths  # noqa: E402

PASSWORD = "bench-password-not-secret-1"
PUPILS, SCHOOLS = 12_000, 18


def school_code(i: int) -> str:
    return f"{'B' if i < 12 else 'C'}1112224{i:05d}0"


def build_warehouse(paths: Paths) -> None:
    con = duckdb.connect(str(paths.warehouse))
    ensure_base_schema(con)
    for spec in CATALOGUE.values():
        ensure_table(con, spec)
    codes = ", ".join(f"('{school_code(i)}', 'ベンチ{'小' if i < 12 else '中'}学校{i}', "
                      f"'{'elementary' if i < 12 else 'junior_high'}')" for i in range(SCHOOLS))
    con.execute(f"INSERT INTO staging.school_master BY NAME SELECT col0 AS school_code, col1 AS school_name, "
                f"col2 AS school_type, 'x' AS district, 'b' AS _file_sha256, DATE '2000-04-01' AS known_date "
                f"FROM (VALUES {codes})")
    con.execute(f"""CREATE TEMP TABLE pupils AS SELECT i, printf('%016x', hash(i)) AS pupil_id,
        (i % {SCHOOLS}) AS s, 1 + (i % 6) + CASE WHEN i % {SCHOOLS} >= 12 THEN 6 ELSE 0 END AS grade,
        CAST(1 + (i // {SCHOOLS}) % 4 AS VARCHAR) AS class_name, random() AS risk FROM range({PUPILS}) t(i)""")
    school_sql = " ".join(f"WHEN {i} THEN '{school_code(i)}'" for i in range(SCHOOLS))
    con.execute(f"ALTER TABLE pupils ADD COLUMN school_code VARCHAR")
    con.execute(f"UPDATE pupils SET school_code = CASE s {school_sql} END")
    con.execute("""INSERT INTO staging.pupil_registry BY NAME SELECT 2026 AS school_year, pupil_id, school_code,
        grade, class_name, 'b' AS _file_sha256, DATE '2026-04-01' AS known_date FROM pupils""")
    con.execute("""CREATE TEMP TABLE days AS SELECT d::DATE AS date FROM range(DATE '2026-04-08', DATE '2026-11-06',
        INTERVAL 1 DAY) t(d) WHERE dayofweek(d) BETWEEN 1 AND 5 AND NOT (month(d) = 8)""")
    con.execute("""INSERT INTO staging.attendance_daily BY NAME SELECT d.date, p.school_code, p.pupil_id,
        CASE WHEN r < p.risk * 0.15 THEN 'absent_other' WHEN r < p.risk * 0.15 + 0.02 THEN 'absent_sick'
             WHEN r < p.risk * 0.15 + 0.04 THEN 'late' ELSE 'present' END AS status,
        CASE WHEN r > 0.995 THEN 'nurse_room' END AS room, 'b' AS _file_sha256, d.date AS known_date
        FROM pupils p, days d, LATERAL (SELECT random() AS r)""")
    con.execute("""INSERT INTO staging.mood_checkin BY NAME SELECT d.date AS checkin_date, p.school_code, p.pupil_id,
        1 + floor(random() * 4)::INTEGER AS mood, 2 AS body, 3 AS sleep, false AS want_to_talk,
        'b' AS _file_sha256, d.date AS known_date FROM pupils p, days d WHERE random() < 0.7""")
    con.execute("""INSERT INTO staging.nurse_office_visits BY NAME SELECT d.date AS visit_date, '10:00' AS visit_time,
        p.school_code, p.pupil_id, p.grade, 'headache' AS symptom, 20 AS rest_minutes, false AS went_home,
        'b' AS _file_sha256, d.date AS known_date FROM pupils p, days d WHERE random() < 0.01""")
    con.execute("""INSERT INTO staging.qu_survey BY NAME SELECT DATE '2026-06-10' AS survey_date, school_code,
        pupil_id, grade, class_name, '1' AS round, 30 AS approval, 20 AS infringement, 'satisfied' AS "group",
        'b' AS _file_sha256, DATE '2026-07-01' AS known_date FROM pupils""")
    con.execute("CREATE SCHEMA outputs")
    con.execute(RISK_SCORES_DDL)
    con.execute(KNOWN_CASES_DDL)
    for as_of, shift in ((date(2026, 10, 1), 0.03), (date(2026, 11, 6), 0.0)):
        publish(con, as_of, shift)
    con.execute("""INSERT INTO outputs.known_cases SELECT pupil_id, school_code, grade, DATE '2026-11-06', 31
                   FROM pupils WHERE risk > 0.977""")
    con.close()


def publish(con, as_of: date, shift: float) -> None:
    con.execute(f"""INSERT INTO outputs.risk_scores BY NAME SELECT pupil_id, school_code, grade,
        DATE '{as_of}' AS as_of_date, greatest(risk - {shift}, 0) ** 6 AS score,
        CASE WHEN risk - {shift} > 0.985 THEN '赤' WHEN risk - {shift} > 0.978 THEN 'ピンク'
             WHEN risk - {shift} > 0.966 THEN '橙' WHEN risk - {shift} > 0.93 THEN '黄' END AS band,
        row_number() OVER (PARTITION BY school_code ORDER BY risk DESC) AS rank_in_school,
        '直近30日の病気以外の欠席 ' || CAST(round(risk * 10) AS INTEGER) || '日（学年平均の約3倍）' AS reason_1,
        '保健室の利用 2回' AS reason_2, '[]' AS reasons_json, 'futoukou_risk' AS model_name, '1' AS model_version,
        now()::TIMESTAMP AS scored_at FROM pupils WHERE risk <= 0.977 OR {shift} = 0 OR true""")


def fill_identity(paths: Paths) -> None:
    from toda_platform.identity import IdentityRecord, IdentityStore

    con = duckdb.connect(str(paths.warehouse), read_only=True)
    rows = con.execute("SELECT pupil_id, school_code, grade, class_name FROM staging.pupil_registry").fetchall()
    con.close()
    IdentityStore(paths.identity).replace({(2026, r[1]) for r in rows}, [
        IdentityRecord(p, 2026, s, g, c, i % 35 + 1, f"試験 太郎{i}", f"しけん たろう{i}", "b")
        for i, (p, s, g, c) in enumerate(rows)])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--port", type=int, default=8765)
    args = ap.parse_args()
    home = Path(tempfile.mkdtemp(prefix="portal_bench_")) / "toda"
    home.mkdir()
    os.environ["TODA_HOME"] = str(home)
    paths = Paths.from_env(home)
    t = time.perf_counter()
    build_warehouse(paths)
    print(f"synthetic warehouse: {PUPILS:,} pupils, {SCHOOLS} schools in {time.perf_counter() - t:.1f} s")
    fill_identity(paths)
    from portal.serving import build_snapshot

    con = duckdb.connect(str(paths.warehouse))  # the asset's connection is read-write too
    first = build_snapshot(con, paths)
    con.close()
    print(f"snapshot: {first.seconds:.2f} s, {first.path.stat().st_size / 1e6:.1f} MB, rows {first.rows}")

    from portal.commands import add_user, migrate, setup

    setup()
    migrate()
    principals = [(f"p{i}", school_code(i % SCHOOLS)) for i in range(args.users)]
    for name, code in principals:
        add_user(name, "principal", PASSWORD, school=code)
    server = subprocess.Popen([str(Path(sys.executable).parent / "toda"), "portal", "--port", str(args.port)],
                              env={**os.environ}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{args.port}"
    try:
        for _ in range(100):
            try:
                requests.get(base + "/login/", timeout=1)
                break
            except requests.ConnectionError:
                time.sleep(0.2)
        con = duckdb.connect(str(paths.warehouse), read_only=True)
        pupils_of = {code: [r[0] for r in con.execute(
            "SELECT pupil_id FROM outputs.risk_scores WHERE school_code = ? AND band IS NOT NULL "
            "AND as_of_date = DATE '2026-11-06' LIMIT 20", [code]).fetchall()] for _, code in principals}
        con.close()
        sessions = []
        for name, code in principals:
            s = requests.Session()
            token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', s.get(base + "/login/").text).group(1)
            r = s.post(base + "/login/", data={"username": name, "password": PASSWORD, "csrfmiddlewaretoken": token},
                       headers={"Referer": base + "/login/"})
            assert r.ok and f"/schools/{code}/" in r.url, (name, r.status_code, r.url)
            sessions.append((s, code))
        times = {"school": [], "pupil": []}
        errors = []
        stop = time.perf_counter() + args.seconds
        lock = threading.Lock()

        def worker(s, code):
            k = 0
            while time.perf_counter() < stop:
                kind = "school" if k % 2 == 0 else "pupil"
                url = f"{base}/schools/{code}/" if kind == "school" else \
                    f"{base}/pupils/{pupils_of[code][k // 2 % len(pupils_of[code])]}/"
                t0 = time.perf_counter()
                r = s.get(url)
                dt = time.perf_counter() - t0
                with lock:
                    (times[kind] if r.status_code == 200 else errors).append(dt if r.ok else (url, r.status_code))
                k += 1

        threads = [threading.Thread(target=worker, args=sc) for sc in sessions]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        for kind, ts in times.items():
            q = statistics.quantiles(ts, n=100)
            print(f"{kind:6} page, {args.users} concurrent users: n={len(ts)} p50 {q[49] * 1000:.0f} ms "
                  f"p95 {q[94] * 1000:.0f} ms ({len(ts) / args.seconds:.1f} pages/s)")
        print(f"errors: {len(errors)} {errors[:3]}")
        # a new list is published: how long until a signed-in principal sees it
        s, code = sessions[0]
        con = duckdb.connect(str(paths.warehouse))
        con.execute("CREATE TEMP TABLE pupils AS SELECT pupil_id, school_code, grade, random() AS risk "
                    "FROM staging.pupil_registry")
        publish(con, date(2026, 12, 1), -0.002)
        t0 = time.perf_counter()
        pub = build_snapshot(con, paths)
        con.close()
        built = time.perf_counter() - t0
        while "2026-12-01" not in s.get(f"{base}/schools/{code}/").text:
            time.sleep(0.05)
        print(f"published list → portal shows it: {time.perf_counter() - t0:.2f} s "
              f"(snapshot build {built:.2f} s; {pub.path.name})")
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    main()
