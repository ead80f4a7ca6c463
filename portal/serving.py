"""The serving snapshot: what the portal's pages need, copied out of the warehouse.

The portal never opens the warehouse (DuckDB takes one writer; a page must not block a run nor a
run a page). After each published risk list, :func:`build_snapshot` writes a new, immutable
DuckDB file ``$TODA_HOME/serving/snapshot_<as-of>_<stamp>.duckdb`` holding only what the pages
show (the newest risk list and its pupils' timelines; the 学校カルテ, support effects and
hardship screen tables with their charts), then swaps the symlink ``serving/current`` to it with one ``rename`` (atomic on POSIX): a
reader sees the old snapshot or the new one, never half of one. :class:`SnapshotReader` follows
the link and opens the file read-only.

No name, kana or registry number is ever written here: pupils appear as their ``pupil_id``.
Plain functions, no Dagster and no Django: the asset (``assets/serving.py``) and the portal both
call them.
"""

from __future__ import annotations

import os
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import duckdb

from toda_platform.settings import Paths

CURRENT = "current"
KEEP_SNAPSHOTS = 3
BANDS = ("赤", "ピンク", "橙", "黄")  # worst first

# the tables of a snapshot, in build order, with what each holds
TABLES = ("meta", "schools", "risk", "known", "att_week", "nurse", "mood_week", "mood_alert",
          "surveys", "events", "support", "charts")
# the second half's tables (issue 11), copied under the same names (schema ``outputs``) when the
# warehouse has them, so ml.karte / ml.support_effects / ml.hardship's page functions read a
# snapshot exactly as they read the warehouse
OUTPUT_TABLES = ("school_karte", "karte_practices", "support_effects", "hardship_screen")
# charts drawn by the outputs assets under $TODA_HOME/reports, copied in as PNG bytes so that a
# page's figures and its chart come from the same snapshot
CHARTS = ("karte/*.png", "support/support_effects.png")


def japanese_labels(source: str, column: str, city=None) -> dict[str, str]:
    """code -> the first Japanese value the city's file maps to it (its display label); the
    home's city unless one is given."""
    city = city or Paths.from_env().city
    out: dict[str, str] = {}
    for ja, code in city.spec(source).column(column).values.items():
        out.setdefault(str(code), ja)
    return out


def _label_case(sql_col: str, source: str, column: str, city) -> str:
    pairs = " ".join(f"WHEN '{code}' THEN '{ja}'" for code, ja in japanese_labels(source, column, city).items())
    return f"CASE CAST({sql_col} AS VARCHAR) {pairs} ELSE CAST({sql_col} AS VARCHAR) END"


def _band_rank(col: str) -> str:
    return f"CASE {col} WHEN '赤' THEN 4 WHEN 'ピンク' THEN 3 WHEN '橙' THEN 2 WHEN '黄' THEN 1 ELSE 0 END"


def _exists(con, table: str) -> bool:
    schema, name = table.split(".")
    return con.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema = ? "
                       "AND table_name = ?", [schema, name]).fetchone()[0] > 0


@dataclass(frozen=True)
class Published:
    path: Path
    as_of_date: date
    previous_as_of_date: date | None
    rows: dict[str, int]
    seconds: float


def build_snapshot(con: duckdb.DuckDBPyConnection, paths: Paths, *, keep: int = KEEP_SNAPSHOTS) -> Published:
    """Copy the newest published risk list and its pupils' timelines into a new snapshot file and
    make it current. ``con`` is a connection to the warehouse (read access is enough)."""
    started = time.perf_counter()
    if not _exists(con, "outputs.risk_scores"):
        raise LookupError("outputs.risk_scores does not exist: no risk list has been published")
    dates = [r[0] for r in con.execute(
        "SELECT DISTINCT as_of_date FROM outputs.risk_scores ORDER BY as_of_date DESC LIMIT 2").fetchall()]
    if not dates:
        raise LookupError("outputs.risk_scores is empty: no risk list has been published")
    as_of, prev = dates[0], (dates[1] if len(dates) > 1 else None)
    meta = con.execute("SELECT any_value(model_name), any_value(model_version), max(scored_at) "
                       "FROM outputs.risk_scores WHERE as_of_date = ?", [as_of]).fetchone()
    school_year = as_of.year - (1 if as_of.month < 4 else 0)

    paths.serving.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now().strftime("%Y%m%dT%H%M%S%f")
    final = paths.serving / f"snapshot_{as_of:%Y%m%d}_{stamp}.duckdb"
    tmp = paths.serving / f".building_{stamp}.duckdb"
    con.execute(f"ATTACH '{tmp}' AS snap")
    try:
        city = paths.city
        _published_schools(con, city)
        _fill(con, as_of=as_of, prev=prev, school_year=school_year, city=city)
        _fill_outputs(con, as_of=as_of, reports=paths.reports)
        con.execute("CREATE TABLE snap.meta (key VARCHAR, value VARCHAR)")
        con.executemany("INSERT INTO snap.meta VALUES (?, ?)", [
            ("as_of_date", as_of.isoformat()), ("previous_as_of_date", prev.isoformat() if prev else ""),
            ("school_year", str(school_year)), ("model", f"{meta[0]} v{meta[1]}"),
            ("scored_at", str(meta[2])), ("published_at", datetime.now().isoformat(timespec="seconds")),
            ("snapshot", final.name)])
        rows = {t: con.execute(f"SELECT count(*) FROM snap.{t}").fetchone()[0] for t in TABLES}
        rows |= {f"outputs.{t}": con.execute(f"SELECT count(*) FROM snap.outputs.{t}").fetchone()[0]
                 for t in OUTPUT_TABLES if _exists(con, f"outputs.{t}")}
    finally:
        con.execute("DROP TABLE IF EXISTS _published")
        con.execute("DETACH snap")
    os.chmod(tmp, 0o440)
    os.replace(tmp, final)
    _point_current(paths.serving, final)
    _prune(paths.serving, final, keep)
    return Published(final, as_of, prev, rows, time.perf_counter() - started)


def _published_schools(con, city) -> None:
    """``_published``: the schools whose list and pages the portal shows — the city file's pilot
    schools, or every school when it lists none. The others' pupils are still scored (for
    training and evaluation: outputs.risk_scores keeps them) but published nowhere."""
    con.execute("CREATE OR REPLACE TEMP TABLE _published AS SELECT school_code FROM staging.school_master")
    if city.pilot_schools:
        con.execute("DELETE FROM _published WHERE NOT list_contains(?, school_code)", [list(city.pilot_schools)])


def _point_current(folder: Path, target: Path) -> None:
    """Swap ``current`` to ``target`` atomically: a new link under a temporary name, renamed over."""
    link = folder / f".current_{os.getpid()}_{threading.get_ident()}"
    if link.is_symlink() or link.exists():
        link.unlink()
    os.symlink(target.name, link)
    os.replace(link, folder / CURRENT)


def _prune(folder: Path, current: Path, keep: int) -> None:
    """Delete all but the newest ``keep`` snapshots. A reader still holding an older file open
    keeps reading it (POSIX unlink semantics) until it follows the link again."""
    old = sorted(folder.glob("snapshot_*.duckdb"), key=lambda p: p.name, reverse=True)
    for path in [p for p in old if p != current][max(keep - 1, 0):]:
        path.unlink(missing_ok=True)


def _fill(con, *, as_of: date, prev: date | None, school_year: int, city) -> None:
    a = f"DATE '{as_of.isoformat()}'"
    p = f"DATE '{prev.isoformat()}'" if prev else "NULL::DATE"
    con.execute(f"""
        CREATE TEMP TABLE _class AS
        SELECT pupil_id, any_value(class_name) AS class_name FROM staging.pupil_registry
        WHERE school_year = {school_year} GROUP BY pupil_id""")
    con.execute(f"""
        CREATE TABLE snap.schools AS
        SELECT school_code, school_name,
               CASE school_type WHEN 'elementary' THEN '小学校' WHEN 'junior_high' THEN '中学校'
                    ELSE school_type END AS school_type,
               school_code IN (SELECT school_code FROM _published) AS published
        FROM staging.school_master ORDER BY school_code""")
    # the list, its previous edition (trend, 新規), each pupil's class
    con.execute(f"""
        CREATE TABLE snap.risk AS
        WITH cur AS (SELECT * FROM outputs.risk_scores WHERE as_of_date = {a}
                     AND school_code IN (SELECT school_code FROM _published)),
             old AS (SELECT pupil_id, band, score FROM outputs.risk_scores WHERE as_of_date = {p})
        SELECT cur.pupil_id, cur.school_code, cur.grade, c.class_name, cur.score, cur.band,
               cur.rank_in_school, cur.reason_1, cur.reason_2, cur.reason_3, cur.reason_4,
               cur.reason_5, old.band AS prev_band, old.score AS prev_score,
               ({p} IS NOT NULL AND cur.band IS NOT NULL AND old.band IS NULL) AS is_new,
               CASE WHEN {p} IS NULL OR old.pupil_id IS NULL THEN 'none'
                    WHEN {_band_rank('cur.band')} > {_band_rank('old.band')} THEN 'up'
                    WHEN {_band_rank('cur.band')} < {_band_rank('old.band')} THEN 'down'
                    WHEN cur.score >= old.score * 1.25 THEN 'up'
                    WHEN cur.score <= old.score * 0.8 THEN 'down'
                    ELSE 'same' END AS trend
        FROM cur LEFT JOIN old USING (pupil_id) LEFT JOIN _class c USING (pupil_id)
        ORDER BY cur.school_code, cur.rank_in_school""")
    # the pupils whose timelines the pages show: the list and the known cases
    if _exists(con, "outputs.known_cases"):
        con.execute(f"""CREATE TEMP TABLE _known AS SELECT pupil_id, school_code, grade,
                        nonillness_absent_days FROM outputs.known_cases WHERE as_of_date =
                        (SELECT max(as_of_date) FROM outputs.known_cases WHERE as_of_date <= {a})
                        AND school_code IN (SELECT school_code FROM _published)""")
    else:
        con.execute("CREATE TEMP TABLE _known (pupil_id VARCHAR, school_code VARCHAR, grade TINYINT, "
                    "nonillness_absent_days INTEGER)")
    con.execute("CREATE TEMP TABLE _pupils AS SELECT pupil_id FROM snap.risk UNION SELECT pupil_id FROM _known")
    year_start = f"DATE '{school_year}-04-01'"
    # attendance of this school year known before the list's date
    con.execute(f"""
        CREATE TEMP TABLE _att AS
        SELECT a.pupil_id, a.date, a.status, a.room FROM staging.attendance_daily a
        JOIN _pupils USING (pupil_id)
        WHERE a.date >= {year_start} AND a.known_date < {a}""")
    con.execute(f"""CREATE TEMP TABLE _calendar AS SELECT DISTINCT date FROM staging.attendance_daily
                    WHERE date >= {year_start} AND known_date < {a}""")
    con.execute("""
        CREATE TABLE snap.att_week AS
        SELECT pupil_id, date_trunc('week', date)::DATE AS week_start, count(*) AS school_days,
               count(*) FILTER (WHERE status = 'absent_sick') AS absent_sick,
               count(*) FILTER (WHERE status = 'absent_other') AS absent_other,
               count(*) FILTER (WHERE status = 'late') AS late,
               count(*) FILTER (WHERE status = 'early_leave') AS early_leave,
               count(*) FILTER (WHERE room = 'nurse_room') AS nurse_room,
               count(*) FILTER (WHERE room = 'separate_room') AS separate_room
        FROM _att GROUP BY ALL ORDER BY pupil_id, week_start""")
    # known cases, with the absence streak now and at the previous list (alert: a growing streak)
    con.execute(f"""
        CREATE TABLE snap.known AS
        WITH last_present AS (
            SELECT pupil_id,
                   max(date) FILTER (WHERE status NOT IN ('absent_sick', 'absent_other')) AS now_p,
                   max(date) FILTER (WHERE status NOT IN ('absent_sick', 'absent_other')
                                     AND date < {p}) AS prev_p
            FROM _att WHERE pupil_id IN (SELECT pupil_id FROM _known) GROUP BY pupil_id)
        SELECT k.pupil_id, k.school_code, k.grade, c.class_name, k.nonillness_absent_days,
               (SELECT count(*) FROM _calendar d WHERE d.date > coalesce(l.now_p, {year_start} - 1)) AS streak_now,
               CASE WHEN {p} IS NULL THEN NULL ELSE
               (SELECT count(*) FROM _calendar d WHERE d.date < {p}
                  AND d.date > coalesce(l.prev_p, {year_start} - 1)) END AS streak_prev
        FROM _known k LEFT JOIN last_present l USING (pupil_id) LEFT JOIN _class c USING (pupil_id)
        ORDER BY k.school_code, k.grade""")
    con.execute(f"""
        CREATE TABLE snap.nurse AS
        SELECT n.pupil_id, n.visit_date, n.visit_time, {_label_case('n.symptom', 'nurse_office_visits', 'symptom', city)}
               AS symptom, n.rest_minutes, n.went_home
        FROM staging.nurse_office_visits n JOIN _pupils USING (pupil_id)
        WHERE n.visit_date >= {year_start} AND n.known_date < {a} ORDER BY pupil_id, visit_date""")
    con.execute(f"""
        CREATE TEMP TABLE _mood AS
        SELECT m.pupil_id, m.checkin_date AS d, CAST(m.mood AS INTEGER) AS mood, m.want_to_talk
        FROM staging.mood_checkin m JOIN _pupils USING (pupil_id)
        WHERE m.checkin_date >= {year_start} AND m.known_date < {a}""")
    con.execute("""
        CREATE TABLE snap.mood_week AS
        SELECT pupil_id, date_trunc('week', d)::DATE AS week_start, count(*) AS checkins,
               avg(mood) AS mood_mean, count(*) FILTER (WHERE mood <= 2) AS bad_days,
               count(*) FILTER (WHERE want_to_talk) AS want_to_talk
        FROM _mood GROUP BY ALL ORDER BY pupil_id, week_start""")
    # 3 bad check-ins in a row (雨 or 雷): the pupil's three latest answers
    con.execute("""
        CREATE TABLE snap.mood_alert AS
        SELECT pupil_id, max(d) AS last_date FROM (
            SELECT pupil_id, d, mood, row_number() OVER (PARTITION BY pupil_id ORDER BY d DESC) AS k
            FROM _mood) WHERE k <= 3
        GROUP BY pupil_id HAVING count(*) = 3 AND bool_and(mood <= 2)""")
    con.execute(f"""
        CREATE TABLE snap.surveys AS
        SELECT q.pupil_id, q.survey_date, 'Q-U' AS survey,
               {_label_case('q."group"', 'qu_survey', 'group', city)} || '（承認 ' || q.approval || '・被侵害 ' ||
               q.infringement || '）' AS result,
               q."group" IN ('needs_support', 'dissatisfied', 'infringed', 'unrecognised') AS concern
        FROM staging.qu_survey q JOIN _pupils USING (pupil_id) WHERE q.known_date < {a}
        UNION ALL
        SELECT pupil_id, survey_date, '学校生活アンケート',
               -- the mean of the questions answered: one skipped question must not blank the line
               CASE WHEN answered = 0 THEN '回答なし'
                    ELSE '平均 ' || round(mean, 1) || '／4' ||
                         CASE WHEN answered < 5 THEN '（未回答 ' || (5 - answered) || '問）' ELSE '' END END,
               coalesce(mean < 2.5, false)
        FROM (SELECT s.pupil_id, s.survey_date, list_avg(q) AS mean, list_count(q) AS answered
              FROM (SELECT *, [q_friends, q_teacher, q_study, q_safe, q_enjoy] AS q
                    FROM staging.school_life_survey) s
              JOIN _pupils USING (pupil_id) WHERE s.known_date < {a})
        ORDER BY 1, 2""")
    con.execute(f"""
        CREATE TABLE snap.events AS
        SELECT b.pupil_id, b.recognised_on AS event_date, 'いじめ' AS kind,
               {_label_case('b.role', 'bullying_records', 'role', city)} || '（' ||
               {_label_case('b.found_by', 'bullying_records', 'found_by', city)} || '）' AS detail
        FROM staging.bullying_records b JOIN _pupils USING (pupil_id) WHERE b.known_date < {a}
        UNION ALL
        SELECT c.pupil_id, c.session_date, '教育相談',
               {_label_case('c.counsellor', 'counseling_records', 'counsellor', city)} || '・' ||
               {_label_case('c.topic', 'counseling_records', 'topic', city)}
        FROM staging.counseling_records c JOIN _pupils USING (pupil_id) WHERE c.known_date < {a}
        ORDER BY 1, 2""")
    con.execute(f"""
        CREATE TABLE snap.support AS
        SELECT s.pupil_id, s.case_id, s.decided_on, s.school_code,
               {_label_case('s.risk_band', 'support_records', 'risk_band', city)} AS risk_band,
               s.action, {_label_case('s.action', 'support_records', 'action', city)} AS action_ja,
               s.agency, {_label_case('s.agency', 'support_records', 'agency', city)} AS agency_ja,
               {_label_case('s.outcome', 'support_records', 'outcome', city)} AS outcome_ja
        FROM staging.support_records s JOIN _pupils USING (pupil_id)
        ORDER BY pupil_id, decided_on""")
    for t in ("_class", "_known", "_pupils", "_att", "_calendar", "_mood"):
        con.execute(f"DROP TABLE IF EXISTS {t}")


def _fill_outputs(con, *, as_of: date, reports: Path) -> None:
    """The 学校カルテ, support effects and the hardship screen (one as-of date: the newest not
    after the list's), and their charts. A table the warehouse does not have yet is left out;
    the pages say it is not there."""
    con.execute("CREATE SCHEMA snap.outputs")
    for t in OUTPUT_TABLES:
        if not _exists(con, f"outputs.{t}"):
            continue
        # the screen names pupils: pilot schools only (the karte's school figures stay whole,
        # a city average counts every school; the portal shows no page of a school not enabled)
        where = (f"WHERE as_of_date = (SELECT max(as_of_date) FROM outputs.{t} "
                 f"WHERE as_of_date <= DATE '{as_of.isoformat()}') "
                 f"AND school_code IN (SELECT school_code FROM _published)" if t == "hardship_screen" else "")
        con.execute(f"CREATE TABLE snap.outputs.{t} AS SELECT * FROM outputs.{t} {where}")
    con.execute("CREATE TABLE snap.charts (name VARCHAR PRIMARY KEY, png BLOB)")
    files = sorted({p for pattern in CHARTS for p in reports.glob(pattern) if p.is_file()})
    if files:
        con.executemany("INSERT INTO snap.charts VALUES (?, ?)",
                        [(p.relative_to(reports).as_posix(), p.read_bytes()) for p in files])


# ---------------------------------------------------------------------------------------------
# Reading (the portal)
# ---------------------------------------------------------------------------------------------

class NoSnapshot(LookupError):
    pass


class SnapshotReader:
    """Follows ``serving/current`` and keeps one read-only connection per snapshot file; each
    query runs on its own cursor, so threads of the web server do not share one."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self._lock = threading.Lock()
        self._open: dict[Path, duckdb.DuckDBPyConnection] = {}

    def current_path(self) -> Path:
        link = self.folder / CURRENT
        try:
            return self.folder / os.readlink(link)
        except OSError:
            raise NoSnapshot(f"no serving snapshot at {link}: the risk list has not been published") from None

    def connection(self) -> duckdb.DuckDBPyConnection:
        path = self.current_path()
        with self._lock:
            con = self._open.get(path)
            if con is None:
                con = duckdb.connect(str(path), read_only=True)
                for old in [p for p in self._open if p != path]:  # drop superseded snapshots
                    self._open.pop(old).close()
                self._open[path] = con
        return con

    def query(self, sql: str, params: list | None = None) -> list[dict]:
        with self.cursor() as cur:
            rel = cur.execute(sql, params or [])
            names = [d[0] for d in rel.description]
            return [dict(zip(names, row)) for row in rel.fetchall()]

    @contextmanager
    def cursor(self):
        """A cursor of its own, for functions that take a DuckDB connection (ml/*_page)."""
        cur = self.connection().cursor()
        try:
            yield cur
        finally:
            cur.close()

    def has(self, table: str) -> bool:
        """``outputs.school_karte`` or ``charts``: is it in the current snapshot?"""
        schema, _, name = table.rpartition(".")
        return bool(self.query("SELECT 1 FROM information_schema.tables WHERE table_schema = ? "
                               "AND table_name = ?", [schema or "main", name]))

    def chart(self, name: str) -> bytes | None:
        if not self.has("charts"):
            return None
        rows = self.query("SELECT png FROM charts WHERE name = ?", [name])
        return bytes(rows[0]["png"]) if rows else None

    def meta(self) -> dict[str, str]:
        return {r["key"]: r["value"] for r in self.query("SELECT key, value FROM meta")}
