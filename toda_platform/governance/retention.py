"""Retention: no record is kept longer than its source's period (``SourceSpec.use``).

A staged row expires when its ``known_date`` is older than the source's ``retention_years``
before today; so do the identity store's names of school years none of whose registry rows is
kept. A derived pupil-level table (marts, outputs: a ``pupil_id`` and an ``as_of_date``)
expires rows older than the *shortest* period among the sources it derives from — its lineage in
the asset graph, or every pupil-level source when the table is not mapped to an asset. An
archived file expires when no staged row still comes from it and it was exported before its
source's cut-off; its copies in ``landing/`` and ``quarantine/`` go with it, and its manifest
rows are marked ``expired`` (so a replay from the archive never looks for it).

Everything that went is written to ``governance.retention_log`` (counts, tables, file hashes:
never a value of a row). ``plan`` is the dry run: it changes nothing. :func:`run` is what
``toda retention`` and the monthly Dagster job (assets/schedules.py) both do.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Iterable, Mapping

import duckdb

from toda_platform.catalogue import CATALOGUE, SourceSpec
from toda_platform.governance.warehouse import base_tables_with, ensure_schema, has_table
from toda_platform.settings import Paths

LOG_DDL = """CREATE TABLE IF NOT EXISTS governance.retention_log (
    run_at TIMESTAMP NOT NULL, today DATE NOT NULL, kind VARCHAR NOT NULL, object VARCHAR NOT NULL,
    source_key VARCHAR, cutoff DATE, removed BIGINT NOT NULL)"""
DERIVED_SCHEMAS = ("marts", "outputs")


def cutoff(spec: SourceSpec, today: date) -> date:
    """The first ``known_date`` still kept: ``retention_years`` before ``today``."""
    years = spec.use.retention_years
    try:
        return today.replace(year=today.year - years)
    except ValueError:  # 29 February
        return today.replace(year=today.year - years, day=28)


@dataclass
class TableCut:
    table: str
    column: str
    cutoff: date
    rows: int
    source_key: str | None = None


@dataclass
class FileCut:
    source_key: str
    sha256: str
    cutoff: date
    paths: list[tuple[str, Path]] = field(default_factory=list)  # (archive|landing|quarantine, path)


@dataclass
class RetentionPlan:
    today: date
    tables: list[TableCut]
    files: list[FileCut]
    identity_years: list[int] = field(default_factory=list)  # school years whose names go
    identity_rows: int = 0
    portal_cutoff: date | None = None  # the portal's case-meeting entries decided before it go
    portal_rows: int = 0

    @property
    def rows(self) -> int:
        return sum(t.rows for t in self.tables)

    def lines(self) -> list[str]:
        out = [f"{t.table}: {t.rows:,} rows with {t.column} before {t.cutoff}" for t in self.tables if t.rows]
        if self.identity_rows:
            out.append(f"identity store: {self.identity_rows:,} records of school years "
                       f"{', '.join(map(str, self.identity_years))}")
        if self.portal_rows:
            out.append(f"portal case-meeting entries: {self.portal_rows:,} decided before {self.portal_cutoff}")
        out += [f"{kind} {p}" for f in self.files for kind, p in f.paths]
        return out


def pupil_sources() -> list[str]:
    return [k for k, s in CATALOGUE.items() if s.use.personal and s.grain == "pupil"]


def _sha_of(path: Path) -> str | None:
    from toda_platform.ingest import sha256_of

    try:
        return sha256_of(path) if path.is_file() else None
    except OSError:
        return None


def plan(con: duckdb.DuckDBPyConnection, paths: Paths, today: date,
         derived: Mapping[str, Iterable[str]] | None = None) -> RetentionPlan:
    """What would go today (the dry run). ``derived``: table → the sources it derives from."""
    derived = {k: list(v) for k, v in (derived or {}).items()}
    tables, files = [], []
    for key, spec in CATALOGUE.items():
        if not has_table(con, "staging", key):
            continue
        cut = cutoff(spec, today)
        n = con.execute(f"SELECT count(*) FROM staging.{key} WHERE known_date < ?", [cut]).fetchone()[0]
        tables.append(TableCut(f"staging.{key}", "known_date", cut, n, key))
    for table in base_tables_with(con, "pupil_id", "as_of_date", schemas=DERIVED_SCHEMAS):
        sources = [s for s in derived.get(table, pupil_sources()) if s in CATALOGUE] or pupil_sources()
        cut = max(cutoff(CATALOGUE[s], today) for s in sources)
        n = con.execute(f"SELECT count(*) FROM {table} WHERE as_of_date < ?", [cut]).fetchone()[0]
        tables.append(TableCut(table, "as_of_date", cut, n))
    if has_table(con, "staging", "file_manifest"):
        files = _expired_files(con, paths, today)
    plan_ = RetentionPlan(today, tables, files)
    _identity_plan(con, paths, plan_)
    _portal_plan(paths, plan_)
    return plan_


PORTAL_SOURCE = "support_records"  # what the portal's case-meeting entries are sent as


def _portal_plan(paths: Paths, plan_: RetentionPlan) -> None:
    """The portal's own copy of the case-meeting decisions (its SupportEntry table) is kept no
    longer than the staged support records (``known_date`` = the decision's date)."""
    from toda_platform.governance.erasure import PORTAL_SUPPORT, portal_db

    plan_.portal_cutoff = cutoff(CATALOGUE[PORTAL_SOURCE], plan_.today)
    db = portal_db(paths)
    if db is None:
        return
    with closing(db):
        plan_.portal_rows = db.execute(f"SELECT count(*) FROM {PORTAL_SUPPORT} WHERE decided_on < ?",
                                       [plan_.portal_cutoff.isoformat()]).fetchone()[0]


def _identity_plan(con, paths: Paths, plan_: RetentionPlan) -> None:
    """Names of the school years whose registry rows are all past retention (after the cut)."""
    store = paths.identity / "identity.sqlite"
    registry = next((t for t in plan_.tables if t.table == "staging.pupil_registry"), None)
    if registry is None or not store.exists():
        return
    kept = {y for (y,) in con.execute("SELECT DISTINCT school_year FROM staging.pupil_registry "
                                      "WHERE known_date >= ?", [registry.cutoff]).fetchall()}
    with closing(sqlite3.connect(store)) as db:
        counts = db.execute("SELECT school_year, count(*) FROM pupil_identity WHERE school_year < ? GROUP BY 1",
                            [registry.cutoff.year]).fetchall()
    plan_.identity_years = sorted(y for y, _n in counts if y not in kept)
    plan_.identity_rows = sum(n for y, n in counts if y not in kept)


def _apply_identity(paths: Paths, plan_: RetentionPlan) -> None:
    if not plan_.identity_years:
        return
    store = paths.identity / "identity.sqlite"
    with closing(sqlite3.connect(store, timeout=30)) as db:
        with db:
            db.executemany("DELETE FROM pupil_identity WHERE school_year = ?", [[y] for y in plan_.identity_years])
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        db.execute("VACUUM")


def _expired_files(con, paths: Paths, today: date) -> list[FileCut]:
    out = []
    for key, spec in CATALOGUE.items():
        cut = cutoff(spec, today)
        live = {sha for (sha,) in con.execute(
            f"SELECT DISTINCT _file_sha256 FROM staging.{key} WHERE known_date >= ?", [cut]).fetchall()
        } if has_table(con, "staging", key) else set()
        rows = con.execute("""
            SELECT sha256, list(DISTINCT file_name), list(DISTINCT archive_path) FILTER (archive_path IS NOT NULL),
                   list(DISTINCT quarantine_path) FILTER (quarantine_path IS NOT NULL)
            FROM staging.file_manifest
            WHERE source_key = ? AND sha256 <> '' AND outcome <> 'expired'
            GROUP BY sha256
            HAVING max(coalesce(exported_at, landed_at, processed_at)) < ?
            ORDER BY sha256""", [key, cut]).fetchall()
        for sha, names, archives, held in rows:
            if sha in live:
                continue
            f = FileCut(key, sha, cut)
            candidates = [("archive", Path(a)) for a in archives or []]
            candidates.append(("archive", paths.archive / key / f"{sha}.csv"))
            candidates += [("landing", paths.landing_dir(key) / n) for n in names or []]
            candidates += [("quarantine", Path(q)) for q in held or []]
            seen = set()
            for kind, p in candidates:
                if p in seen or not p.exists() or _sha_of(p) != sha:
                    continue
                seen.add(p)
                f.paths.append((kind, p))
            out.append(f)
    return out


def apply(con: duckdb.DuckDBPyConnection, paths: Paths, plan_: RetentionPlan) -> RetentionPlan:
    """Drop what ``plan_`` lists, in one transaction, record it, then delete the files."""
    ensure_schema(con)
    con.execute(LOG_DDL)
    run_at = datetime.now(timezone.utc).replace(tzinfo=None)
    note = f"past its retention period: removed by `toda retention` on {plan_.today}"
    con.execute("BEGIN TRANSACTION")
    try:
        for t in plan_.tables:
            if not t.rows:
                continue
            n = con.execute(f"DELETE FROM {t.table} WHERE {t.column} < ?", [t.cutoff]).fetchone()[0]
            t.rows = n
            con.execute("INSERT INTO governance.retention_log VALUES (?, ?, 'rows', ?, ?, ?, ?)",
                        [run_at, plan_.today, t.table, t.source_key, t.cutoff, n])
        for f in plan_.files:
            con.execute("UPDATE staging.file_manifest SET outcome = 'expired', archive_path = NULL, "
                        "quarantine_path = NULL, message = ? WHERE source_key = ? AND sha256 = ?",
                        [note, f.source_key, f.sha256])
            con.execute("DELETE FROM staging.file_coverage WHERE source_key = ? AND sha256 = ?",
                        [f.source_key, f.sha256])
            con.execute("INSERT INTO governance.retention_log VALUES (?, ?, 'file', ?, ?, ?, ?)",
                        [run_at, plan_.today, f.sha256, f.source_key, f.cutoff, len(f.paths)])
        if plan_.identity_rows:
            con.execute("INSERT INTO governance.retention_log VALUES (?, ?, 'identity', ?, 'pupil_registry', NULL, ?)",
                        [run_at, plan_.today, "identity store, school years "
                         + ", ".join(map(str, plan_.identity_years)), plan_.identity_rows])
        if plan_.portal_rows:
            con.execute("INSERT INTO governance.retention_log VALUES (?, ?, 'portal', 'portal case-meeting entries', "
                        "?, ?, ?)", [run_at, plan_.today, PORTAL_SOURCE, plan_.portal_cutoff, plan_.portal_rows])
        con.execute("COMMIT")
    except Exception:
        con.execute("ROLLBACK")
        raise
    _apply_identity(paths, plan_)
    if plan_.portal_rows:
        from toda_platform.governance.erasure import PORTAL_SUPPORT, portal_support

        plan_.portal_rows = portal_support(paths, f"DELETE FROM {PORTAL_SUPPORT} WHERE decided_on < ?",
                                           [[plan_.portal_cutoff.isoformat()]])
    for f in plan_.files:
        for _kind, p in f.paths:
            p.unlink(missing_ok=True)
            reasons = Path(f"{p}.reasons.json")
            if reasons.exists():
                reasons.unlink()
    return plan_


def table_sources(assets: Iterable) -> dict[str, list[str]]:
    """``schema.table`` → the sources it derives from, from the assets' ``dagster/table_name``
    metadata and their lineage."""
    from toda_platform.governance.purposes import graph, lineage_sources

    parents, _groups, metadata = graph(list(assets))
    out = {}
    for key, meta in metadata.items():
        table = meta.get("dagster/table_name")
        table = getattr(table, "value", table)
        if isinstance(table, str) and "." in table:
            out[table] = sorted(lineage_sources(parents, key))
    return out




def today_in_tokyo() -> date:
    from zoneinfo import ZoneInfo

    return datetime.now(ZoneInfo("Asia/Tokyo")).date()


def run(paths: Paths, today: date | None = None, *, dry_run: bool = False,
        derived: Mapping[str, Iterable[str]] | None = None, log=None) -> RetentionPlan:
    """Plan (and unless ``dry_run`` apply) retention on the home's warehouse. ``derived``
    defaults to the lineage of the platform's own asset definitions."""
    from toda_platform.warehouse import connect

    if not paths.warehouse.exists():
        raise FileNotFoundError(f"no warehouse at {paths.warehouse}")
    if derived is None:
        from toda_platform.definitions import build_definitions

        derived = table_sources(build_definitions(paths).assets)
    con = connect(paths.warehouse, log=log)
    try:
        plan_ = plan(con, paths, today or today_in_tokyo(), derived)
        if not dry_run:
            apply(con, paths, plan_)
    finally:
        con.close()
    return plan_


def summary(plan_: RetentionPlan, *, dry_run: bool = False) -> str:
    verb = "would go" if dry_run else "removed"
    portal = f", {plan_.portal_rows:,} portal case-meeting entries" if plan_.portal_rows else ""
    return (f"{plan_.rows:,} rows and {sum(len(f.paths) for f in plan_.files):,} files{portal} {verb} "
            f"(retention counted back from {plan_.today})"
            + ("" if dry_run else "; recorded in governance.retention_log"))
