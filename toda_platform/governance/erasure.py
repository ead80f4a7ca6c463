"""Erasing one pupil everywhere under ``TODA_HOME``, and keeping them out of every rebuild.

``erase(con, paths, key, number, reason)`` (then :func:`compact` with the connection closed):

1. works out the pupil's pseudonym and, from the registry, their resident pseudonyms;
2. rewrites every department file that holds their rows — the archive copy (renamed to its new
   sha256), the landing and quarantine copies (same bytes, modification time kept, so the next
   scan sees the same landing) — without those rows;
3. in one warehouse transaction: deletes their rows from every table holding a ``pupil_id`` or
   ``resident_id`` (staging, marts, outputs, models…), points the manifest, coverage, releases
   and staged rows at the rewritten files (``governance.erasure_files``);
4. erases them from the identity store and the portal's support entries, and rewrites every
   serving snapshot without them (the portal follows ``serving/current`` to the new file);
5. scrubs any other text file under the home (exports, reports, MLflow artifacts) of the
   pupil's pseudonyms, numbers and names;
6. vacuums the SQLite stores and writes ``governance.erasure_log``; :func:`compact` rewrites the
   warehouse into a fresh file, so that deleted rows do not linger in free blocks.

What is kept to prove it happened holds no identifying value: the erasure list
(``$TODA_HOME/governance/erased.tokens``) and ``governance.erasure_log`` hold tokens, never the
pseudonym, number or name; the reason is stored as given and must not name the pupil (it is
refused when it holds their number or name). Each line of the list is one erased person:
``sha256(pseudonym)``, ``n:HMAC-SHA256(erasure key, number)`` and ``k:`` the fingerprint of the
pseudonym key the first was made with. The number token survives a key rotation (the pseudonym
changes, the number does not); it is keyed by its own secret (``$TODA_HOME/secrets/erasure.key``,
0600, never rotated) so the list cannot be checked against guessed numbers without it. A line without ``n:`` was written before 2026-11-30: it stops matching
after a rotation, so ``toda keys rotate`` refuses while one is left (see keys.py).

Ingestion calls :func:`keep_out` on every file it reads, and :func:`sweep` after a file had such
rows: a department re-sending an old export (with the pupil in it) does not bring them back —
into the warehouse, the identity store or the archive — even into a warehouse rebuilt from
nothing, and even under a new key (the file's numbers are checked against the ``n:`` tokens; a
hit adds the pupil's token under the current key).

The portal's audit log is not rewritten (it is hash-chained evidence of who looked at the pupil):
its entries name pupils by commitments whose secrets are in the audit subject store, and the
pupil's secret is deleted there (crypto-shredding, audit_subjects.py) — the entries stay and
verify, but can no longer be tied to the pupil.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import sqlite3
import tempfile
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable

import duckdb

from toda_platform.catalogue import CATALOGUE, SourceSpec
from toda_platform.governance import audit_subjects
from toda_platform.governance.csvfiles import Rewritten, decode, identifier_values, identifies, without
from toda_platform.governance.warehouse import base_tables_with, ensure_schema, has_table
from toda_platform.identity import IdentityStore
from toda_platform.pseudonym import normalise_number, pseudonymise
from toda_platform.settings import Paths

ERASED_FILE = "erased.tokens"  # under $TODA_HOME/governance: one erased person per line
ERASURE_KEY_FILE = "erasure.key"  # under $TODA_HOME/secrets: keys the n: tokens; never rotated
NUMBER_TOKEN = "n:"
KEY_TAG = "k:"  # the fingerprint of the pseudonym key a line's sha256(pseudonym) was made with
LOG_DDL = """CREATE TABLE IF NOT EXISTS governance.erasure_log (
    erasure_id VARCHAR NOT NULL, erased_at TIMESTAMP NOT NULL, token VARCHAR NOT NULL,
    reason VARCHAR NOT NULL, rows_removed BIGINT NOT NULL, tables JSON, files_rewritten INTEGER,
    snapshots_rewritten INTEGER, identity_rows INTEGER, other_files_scrubbed INTEGER)"""
FILES_DDL = """CREATE TABLE IF NOT EXISTS governance.erasure_files (
    erasure_id VARCHAR NOT NULL, source_key VARCHAR NOT NULL, old_sha256 VARCHAR NOT NULL,
    new_sha256 VARCHAR NOT NULL, rows_removed INTEGER NOT NULL)"""
ID_COLUMNS = ("pupil_id", "resident_id")
DB_SUFFIXES = (".duckdb", ".sqlite", ".sqlite3", ".db", ".wal", "-wal", "-shm")
MASK = "＊"


class ErasureError(ValueError):
    pass


def token(pseudonym: str) -> str:
    """What the erasure list keeps of a pseudonym: its sha256 (also computable in DuckDB SQL)."""
    return hashlib.sha256(pseudonym.encode("utf-8")).hexdigest()


@dataclass
class ErasureReport:
    erasure_id: str
    token: str
    rows: dict[str, int] = field(default_factory=dict)
    files_rewritten: int = 0
    snapshots_rewritten: int = 0
    identity_rows: int = 0
    portal_rows: int = 0
    audit_subjects: int = 0  # secrets shredded in the audit subject store
    scrubbed: list[str] = field(default_factory=list)

    @property
    def rows_removed(self) -> int:
        return sum(self.rows.values())


def ensure_tables(con) -> None:
    ensure_schema(con)
    for ddl in (LOG_DDL, FILES_DDL):
        con.execute(ddl)


def _id_filter(con, table: str) -> tuple[str, list]:
    cols = {c for (c,) in con.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema || '.' || table_name = ?",
        [table.replace('"', "")]).fetchall()}
    present = [c for c in ID_COLUMNS if c in cols]
    return " OR ".join(f"{c} IN (SELECT unnest(?))" for c in present), present


@dataclass
class FileRewrite:
    """One department file (all its copies: same bytes) and the same file without some pupils."""

    spec: SourceSpec
    old_sha: str
    rewritten: Rewritten
    copies: list[tuple[str, Path]] = field(default_factory=list)  # (archive|landing|quarantine, path)

    @property
    def new_sha(self) -> str:
        return hashlib.sha256(self.rewritten.data).hexdigest()


def _mentions(data: bytes, hints: set[str]) -> bool:
    """Whether the file's text (NFKC, as numbers are normalised before hashing) contains a hint."""
    try:
        text = unicodedata.normalize("NFKC", decode(data)[0])
    except UnicodeDecodeError:
        return True  # let the reader decide
    return any(h in text for h in hints)


def find_rewrites(paths: Paths, key: bytes, is_target: Callable[[str], bool],
                  sources: Iterable[str] | None = None, hints: set[str] | None = None) -> list[FileRewrite]:
    """Every department file (archive, landing, quarantine) holding a target's rows, rewritten in
    memory. Nothing is written yet. ``hints``: raw numbers and pseudonyms of the targets — a file
    whose text contains none of them is not parsed (parsing and hashing every row is the slow part)."""
    found: dict[tuple[str, str], FileRewrite] = {}
    for skey in sources or CATALOGUE:
        spec = paths.city.spec(skey)  # the city's headers find the identifiers in its files
        if not identifies(spec):
            continue
        for kind, folder in (("archive", paths.archive / skey), ("landing", paths.landing_dir(skey)),
                             ("quarantine", paths.quarantine / skey)):
            if not folder.is_dir():
                continue
            for p in sorted(folder.iterdir()):
                if not p.is_file() or p.is_symlink() or p.name.endswith(".reasons.json"):
                    continue
                data = p.read_bytes()
                sha = hashlib.sha256(data).hexdigest()
                entry = found.get((skey, sha))
                if entry is None:
                    rewritten = without(spec, data, key, is_target) if not hints or _mentions(data, hints) else None
                    if rewritten is None:
                        continue
                    entry = found[(skey, sha)] = FileRewrite(spec, sha, rewritten)
                entry.copies.append((kind, p))
    return list(found.values())


def _stage(paths: Paths, rewrites: list[FileRewrite]) -> list[Path]:
    """The new archive copies, written before the warehouse changes (removed again on failure)."""
    written = []
    for f in rewrites:
        if any(kind == "archive" for kind, _ in f.copies):
            target = paths.archive / f.spec.key / f"{f.new_sha}.csv"
            if not target.exists():
                _write_readonly(target, f.rewritten.data)
                written.append(target)
    return written


def _record_rewrites(con, paths: Paths, rewrites: list[FileRewrite], erasure_id: str) -> None:
    """Inside the caller's transaction: the warehouse points at the rewritten files."""
    for f in rewrites:
        _repoint(con, paths, f.spec, f.old_sha, f.new_sha, len(f.rewritten.data))
        con.execute("INSERT INTO governance.erasure_files VALUES (?, ?, ?, ?, ?)",
                    [erasure_id, f.spec.key, f.old_sha, f.new_sha, f.rewritten.removed])


def _finish(rewrites: list[FileRewrite]) -> None:
    """After the commit: old archive names go, landing and quarantine copies are rewritten."""
    for f in rewrites:
        for kind, p in f.copies:
            if kind == "archive":
                if p.name != f"{f.new_sha}.csv":
                    _unlink(p)
            else:
                _rewrite_in_place(p, f.rewritten.data)


def sweep(con: duckdb.DuckDBPyConnection, spec: SourceSpec, paths: Paths, key: bytes) -> int:
    """After ingestion kept erased pupils out of a source's staged rows (:func:`keep_out`), the
    files it archived still hold them as the department sent them: rewrite those too. Returns
    the files rewritten."""
    tokens = erased_tokens(paths)
    if not tokens:
        return 0
    rewrites = find_rewrites(paths, key, lambda p: token(p) in tokens, [spec.key])
    if not rewrites:
        return 0
    ensure_tables(con)
    apply_rewrites(con, paths, rewrites, f"sweep-{datetime.now(timezone.utc):%Y%m%d%H%M%S}")
    return len(rewrites)


def apply_rewrites(con, paths: Paths, rewrites: list[FileRewrite], erasure_id: str,
                   also: Callable[[], None] = lambda: None) -> None:
    """New archive copies first; then, in one transaction, ``also`` (the caller's own deletes)
    and the warehouse pointed at them; after the commit the old copies go. On failure the new
    copies are removed and nothing changed."""
    written = _stage(paths, rewrites)
    con.execute("BEGIN TRANSACTION")
    try:
        also()
        _record_rewrites(con, paths, rewrites, erasure_id)
        con.execute("COMMIT")
    except Exception:
        con.execute("ROLLBACK")
        for p in written:
            _unlink(p)
        raise
    _finish(rewrites)


def erase(con: duckdb.DuckDBPyConnection, paths: Paths, key: bytes, number: str, reason: str) -> ErasureReport:
    number = normalise_number(number)
    if not number:
        raise ErasureError("no student number given")
    if not reason.strip():
        raise ErasureError("a reason is required (it is recorded)")
    if number in reason:
        raise ErasureError("the reason must not contain the student number (it is kept in the log)")
    pupil_id = pseudonymise(key, number)
    residents = set()
    if has_table(con, "staging", "pupil_registry"):
        residents = {r for (r,) in con.execute(
            "SELECT DISTINCT resident_id FROM staging.pupil_registry WHERE pupil_id = ? AND resident_id IS NOT NULL",
            [pupil_id]).fetchall()}
    targets = {pupil_id, *residents}
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    report = ErasureReport(erasure_id=f"E{now:%Y%m%d%H%M%S}-{token(pupil_id)[:8]}", token=token(pupil_id))

    identity = IdentityStore(paths.identity)
    known = identity.lookup([pupil_id]).get(pupil_id)
    needles = {pupil_id, number, *residents}
    if known is not None:
        needles |= {v for v in (known.name, known.kana) if v}
        if any(v and v in reason for v in (known.name, known.kana)):
            raise ErasureError("the reason must not name the pupil (it is kept in the log)")

    # 0. the erasure list first: from now on no ingestion lets them in
    ekey = erasure_key(paths, create=True)
    add_erased(paths, [(report.token, number_token(ekey, number)), *((token(r), None) for r in residents)], key)

    # 1. files, rewritten to new archive names before the transaction (removed again on failure)
    # the registry first: its rows of the pupil give their raw 宛名番号, which the welfare files key on
    hints = {number, *targets}
    rewrites = find_rewrites(paths, key, targets.__contains__, ["pupil_registry"], hints)
    for f in rewrites:
        needles |= f.rewritten.needles
        hints |= {normalise_number(n) for n in f.rewritten.needles}
    # the registry's 宛名番号 of the pupil: their resident tokens, now with the number's
    add_erased(paths, [(token(pseudonymise(key, n)), number_token(ekey, n)) for n in sorted(hints)
                       if pseudonymise(key, n) in residents], key)
    rewrites += find_rewrites(paths, key, targets.__contains__, [k for k in CATALOGUE if k != "pupil_registry"],
                              hints)
    for f in rewrites:
        needles |= f.rewritten.needles
    ensure_tables(con)

    def delete_rows() -> None:
        for table in sorted(set(base_tables_with(con, "pupil_id")) | set(base_tables_with(con, "resident_id"))):
            where, cols = _id_filter(con, table)
            if not where or table.startswith("governance."):
                continue
            n = con.execute(f"DELETE FROM {table} WHERE {where}", [list(targets)] * len(cols)).fetchone()[0]
            if n:
                report.rows[table] = n

    # 2-3. in one warehouse transaction: every row of theirs, and the files repointed; then the
    # old archive names go and the landing and quarantine copies are rewritten
    apply_rewrites(con, paths, rewrites, report.erasure_id, also=delete_rows)
    report.files_rewritten = len(rewrites)

    # 4. identity store, portal entries, serving snapshots
    report.identity_rows = sum(identity.erase(t) for t in targets) if identity.path.exists() else 0
    _vacuum_sqlite(identity.path)
    report.portal_rows = portal_support(paths, f"DELETE FROM {PORTAL_SUPPORT} WHERE pupil_id = ?",
                                        [[t] for t in targets])
    report.snapshots_rewritten = _rewrite_snapshots(paths, targets)
    report.audit_subjects = audit_subjects.shred(targets, audit_subjects.store_path(paths))

    # 5. any other text file under the home
    report.scrubbed = [str(p.relative_to(paths.home)) for p in scrub_files(paths, needles)]

    con.execute("INSERT INTO governance.erasure_log VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [report.erasure_id, now, report.token, reason.strip(), report.rows_removed,
                 json.dumps(report.rows), report.files_rewritten, report.snapshots_rewritten,
                 report.identity_rows, len(report.scrubbed)])
    con.execute("CHECKPOINT")
    return report


def _repoint(con, paths: Paths, spec: SourceSpec, old: str, new: str, size: int) -> None:
    new_path = str(paths.archive / spec.key / f"{new}.csv")
    con.execute("UPDATE staging.file_manifest SET sha256 = ?, size_bytes = ?, "
                "archive_path = CASE WHEN archive_path IS NULL THEN NULL ELSE ? END "
                "WHERE source_key = ? AND sha256 = ?", [new, size, new_path, spec.key, old])
    con.execute("UPDATE staging.file_manifest SET superseded_by = ? WHERE source_key = ? AND superseded_by = ?",
                [new, spec.key, old])
    for table in ("file_coverage", "file_releases"):
        if has_table(con, "staging", table):
            con.execute(f"UPDATE staging.{table} SET sha256 = ? WHERE source_key = ? AND sha256 = ?",
                        [new, spec.key, old])
    if has_table(con, "staging", "file_coverage"):
        con.execute("UPDATE staging.file_coverage SET replaced_by = ? WHERE source_key = ? AND replaced_by = ?",
                    [new, spec.key, old])
    if has_table(con, "staging", spec.key):
        con.execute(f"UPDATE staging.{spec.key} SET _file_sha256 = ? WHERE _file_sha256 = ?", [new, old])


def _write_readonly(target: Path, data: bytes) -> None:
    from toda_platform.ingest import write_readonly

    write_readonly(target, data, prefix=".erasing-")


def _rewrite_in_place(path: Path, data: bytes) -> None:
    st = path.stat()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".erasing-")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(tmp, st.st_mode & 0o777)
    os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))  # the same landing, for the next scan
    os.replace(tmp, path)


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def _vacuum_sqlite(path: Path) -> None:
    if not path.exists():
        return
    con = sqlite3.connect(path, timeout=30)
    try:
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        con.execute("VACUUM")
    finally:
        con.close()


PORTAL_SUPPORT = "portal_supportentry"  # the portal's support entries (portal/models.py SupportEntry)


def portal_db(paths: Paths) -> sqlite3.Connection | None:
    """A connection to the portal's database when it holds its support entries, else None."""
    db = paths.home / "portal" / "portal.sqlite3"
    if not db.exists():
        return None
    con = sqlite3.connect(db, timeout=30)
    if not con.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?",
                       [PORTAL_SUPPORT]).fetchone()[0]:
        con.close()
        return None
    return con


def portal_support(paths: Paths, statement: str = "", rows: Iterable[list] = ()) -> list[str] | int:
    """The portal's support entries (its audit log is left whole: see the module doc). Without a
    statement: the pseudonyms they hold; with one: run it over ``rows`` in one transaction and
    return the rows changed."""
    con = portal_db(paths)
    if con is None:
        return [] if not statement else 0
    db = paths.home / "portal" / "portal.sqlite3"
    try:
        if not statement:
            return [r[0] for r in con.execute(f"SELECT DISTINCT pupil_id FROM {PORTAL_SUPPORT}")]
        with con:
            n = sum(con.execute(statement, row).rowcount for row in rows)
    finally:
        con.close()
    _vacuum_sqlite(db)
    return n


def _rewrite_snapshots(paths: Paths, targets: set[str]) -> int:
    """Each serving snapshot holding a target is copied, without them, to a new file; the old file
    goes and ``current`` follows to the new one."""
    if not paths.serving.is_dir():
        return 0
    current = paths.serving / "current"
    pointed = current.resolve() if current.is_symlink() else None  # followed by replace_snapshot
    done = 0
    for snap in sorted(paths.serving.glob("snapshot_*.duckdb")):
        src = duckdb.connect(str(snap), read_only=True)
        try:
            hit = any(src.execute(f"SELECT count(*) FROM {t} WHERE {w}", [list(targets)] * len(c)).fetchone()[0]
                      for t in base_tables_with(src, "pupil_id") + base_tables_with(src, "resident_id")
                      for w, c in [_id_filter(src, t)] if w)
        finally:
            src.close()
        if not hit:
            continue
        replace_snapshot(paths, snap, "e", pointed, exclude=targets)
        done += 1
    return done


def _sql_path(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def replace_snapshot(paths: Paths, snap: Path, tag: str, pointed: Path | None, *,
                     exclude: set[str] | None = None, remap: dict[str, str] | None = None) -> Path:
    """A serving snapshot copied (without ``exclude``, re-keyed by ``remap``) to a new read-only
    file; ``current`` follows it if it pointed at the old one (``pointed``); the old file goes."""
    new = snap.with_name(f"{snap.stem}_{tag}{datetime.now():%H%M%S%f}.duckdb")
    copy_duckdb(snap, new, exclude, remap)
    os.chmod(new, 0o440)
    if pointed == snap.resolve():
        link = paths.serving / f".current_{tag}_{os.getpid()}"
        _unlink(link)
        os.symlink(new.name, link)
        os.replace(link, paths.serving / "current")
    _unlink(snap)
    return new


def copy_duckdb(source: Path, target: Path, exclude: set[str] | None = None,
                remap: dict[str, str] | None = None) -> None:
    """A fresh DuckDB file with ``source``'s schema (tables, constraints, views, sequences) and
    rows — without the rows of ``exclude`` in a ``pupil_id``/``resident_id`` column, and with
    those columns mapped through ``remap`` (a key rotation): rows deleted or left out never reach
    the new file's blocks."""
    _unlink(target)
    con = duckdb.connect()
    try:
        con.execute(f"ATTACH {_sql_path(source)} AS src (READ_ONLY)")
        con.execute(f"ATTACH {_sql_path(target)} AS dst")
        con.execute("COPY FROM DATABASE src TO dst (SCHEMA)")
        if remap:
            register_map(con, remap)
        tables = con.execute("SELECT schema_name, table_name FROM duckdb_tables() WHERE database_name = 'src' "
                             "AND NOT internal").fetchall()
        for schema, table in tables:
            cols = {c for (c,) in con.execute(
                "SELECT column_name FROM duckdb_columns() WHERE database_name = 'src' AND schema_name = ? "
                "AND table_name = ?", [schema, table]).fetchall()}
            ids = [c for c in ID_COLUMNS if c in cols]
            kept = ids if exclude else []
            where = " AND ".join(f'(t."{c}" IS NULL OR t."{c}" NOT IN (SELECT unnest(?)))' for c in kept) or "true"
            select, joins = "t.*", ""
            if remap and ids:
                select = "t.* REPLACE (" + ", ".join(f'coalesce(m{i}.new, t."{c}") AS "{c}"'
                                                     for i, c in enumerate(ids)) + ")"
                joins = " ".join(f'LEFT JOIN _key_map m{i} ON t."{c}" = m{i}.old' for i, c in enumerate(ids))
            con.execute(f'INSERT INTO dst."{schema}"."{table}" SELECT {select} FROM src."{schema}"."{table}" t '
                        f"{joins} WHERE {where}", [list(exclude or ())] * len(kept))
        con.execute("DETACH dst")
        con.execute("DETACH src")
    finally:
        con.close()


def register_map(con: duckdb.DuckDBPyConnection, mapping: dict[str, str]) -> None:
    """``mapping`` as the temporary table ``_key_map(old, new)``."""
    import pyarrow as pa

    con.register("_key_map_arrow", pa.table({"old": list(mapping), "new": list(mapping.values())}))
    con.execute("CREATE OR REPLACE TEMP TABLE _key_map AS SELECT * FROM _key_map_arrow")
    con.unregister("_key_map_arrow")


def compact(path: Path) -> None:
    """Rewrite a DuckDB file into a fresh one and swap it in: deleted rows can linger in the free
    blocks of the old file. Call after :func:`erase` with every connection to it closed. The
    file stays locked (open for writing here) until the swap, so no run writes to it meanwhile."""
    from toda_platform.warehouse import connect

    tmp = path.with_name(f".compacting-{path.name}")
    _unlink(tmp)
    con = connect(path)
    try:
        db = con.execute("SELECT current_database()").fetchone()[0]
        con.execute("CHECKPOINT")
        con.execute(f"ATTACH {_sql_path(tmp)} AS fresh")
        con.execute(f'COPY FROM DATABASE "{db}" TO fresh')
        con.execute("DETACH fresh")
        os.replace(tmp, path)
    except Exception:
        _unlink(tmp)
        raise
    finally:
        con.close()


def _text(data: bytes) -> tuple[str, str] | None:
    if b"\x00" in data[:4096]:
        return None
    try:
        return decode(data)
    except UnicodeDecodeError:
        return None


def scrub_files(paths: Paths, needles: set[str]) -> list[Path]:
    """Text files under the home (other than databases and the department files already
    rewritten) that mention a needle: a CSV loses the lines that do, any other text has each
    occurrence masked. Returns the files changed."""
    needles = {n for n in needles if n and len(n) >= 2}
    if not needles:
        return []
    changed = []
    skip = {paths.archive, paths.landing, paths.quarantine, paths.serving, paths.identity, paths.secrets,
            paths.dagster_home}
    for root, dirs, names in os.walk(paths.home):
        here = Path(root)
        dirs[:] = [d for d in dirs if here / d not in skip]
        for name in names:
            p = here / name
            if p.is_symlink() or name.endswith(DB_SUFFIXES) or p == paths.warehouse:
                continue
            try:
                data = p.read_bytes()
            except OSError:
                continue
            decoded = _text(data)
            if decoded is None:
                continue
            text, encoding = decoded
            if not any(n in text for n in needles):
                continue
            if p.suffix.lower() == ".csv":
                new = "".join(line for line in text.splitlines(keepends=True) if not any(n in line for n in needles))
            else:
                new = text
                for n in sorted(needles, key=len, reverse=True):
                    new = new.replace(n, MASK)
            _rewrite_in_place(p, new.encode(encoding))
            changed.append(p)
    return changed


def erased_file(paths: Paths) -> Path:
    """The erasure list: tokens only, outside the warehouse so that a warehouse rebuilt from
    nothing still keeps the pupils out."""
    return paths.home / "governance" / ERASED_FILE


def _lines(paths: Paths) -> list[list[str]]:
    f = erased_file(paths)
    return [ln.split() for ln in f.read_text(encoding="ascii").splitlines() if ln.strip()] if f.exists() else []


def _is_token(word: str) -> bool:
    return not word.startswith((NUMBER_TOKEN, KEY_TAG))


def erased_tokens(paths: Paths) -> set[str]:
    """The pseudonym tokens (``sha256(pseudonym)``) of the erasure list."""
    return {t for words in _lines(paths) for t in words if _is_token(t)}


def erased_number_tokens(paths: Paths, key: bytes | None = None) -> set[str]:
    """The number tokens (``n:…``) of the erasure list: they outlive a key rotation. With ``key``:
    only those with no pseudonym token under that key yet (``k:`` names the key a line's
    pseudonym token was made with) — the ones ingestion must look for by number."""
    lines = _lines(paths)
    found = {t for words in lines for t in words if t.startswith(NUMBER_TOKEN)}
    if key is None:
        return found
    tag = _key_tag(key)
    return found - {t for words in lines if tag in words for t in words}


def legacy_tokens(paths: Paths) -> set[str]:
    """Pseudonym tokens with no number token on any line: erasures recorded before 2026-11-30,
    which a key rotation would stop matching."""
    lines = _lines(paths)
    covered = {t for words in lines if any(w.startswith(NUMBER_TOKEN) for w in words) for t in words}
    return {t for words in lines for t in words if _is_token(t) and t not in covered}


def _key_tag(key: bytes) -> str:
    from toda_platform.governance.keys import fingerprint

    return KEY_TAG + fingerprint(key)


def erasure_key(paths: Paths, *, create: bool = False) -> bytes | None:
    """The secret keying the number tokens (created by the first erasure, mode 0600). Not the
    pseudonym key, and not rotated with it: the tokens it keyed must keep matching."""
    f = paths.secrets / ERASURE_KEY_FILE
    if f.exists():
        return f.read_text(encoding="ascii").strip().encode("ascii")
    if not create:
        return None
    import secrets

    f.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(f, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return erasure_key(paths)
    with os.fdopen(fd, "w", encoding="ascii") as out:
        out.write(secrets.token_hex(32) + "\n")
        out.flush()
        os.fsync(out.fileno())
    return erasure_key(paths)


def number_token(ekey: bytes, number: str) -> str:
    return NUMBER_TOKEN + hmac.new(ekey, normalise_number(number).encode("utf-8"), hashlib.sha256).hexdigest()


def add_erased(paths: Paths, entries: list[tuple[str, str | None]], key: bytes | None = None) -> None:
    """Append (pseudonym token, number token or None) lines not already on the list; ``key``: the
    pseudonym key the tokens were made with (named by its fingerprint on lines with a number)."""
    f = erased_file(paths)
    f.parent.mkdir(parents=True, exist_ok=True)
    lines = _lines(paths)
    have = {tuple(words) for words in lines}
    tokens = {t for words in lines for t in words if _is_token(t)}
    tag = _key_tag(key) if key is not None else None
    new = list(dict.fromkeys(tuple(w for w in (*e, tag if e[1] else None) if w) for e in entries))
    new = [e for e in new if e not in have and not (len(e) == 1 and e[0] in tokens)]
    if new:
        with f.open("a", encoding="ascii") as out:
            out.write("".join(" ".join(e) + "\n" for e in new))
            out.flush()
            os.fsync(out.fileno())


def _by_number(paths: Paths, spec: SourceSpec, data: bytes, key: bytes, numbers: set[str]) -> dict[str, str]:
    """pseudonym token (under ``key``) → number token, for the file's numbers on the list."""
    ekey = erasure_key(paths)
    if ekey is None:
        return {}
    out = {}
    for n in identifier_values(spec, data):
        nt = number_token(ekey, n)
        if nt in numbers:
            out[token(pseudonymise(key, n))] = nt
    return out


def keep_out(con: duckdb.DuckDBPyConnection, spec: SourceSpec, staged, paths: Paths, *,
             key: bytes | None = None, data: bytes | None = None) -> int:
    """Called by ingestion on each file read into ``_typed``: the rows (and registry names) of
    erased pupils are dropped before the file is checked and applied, so a department re-sending
    an export with them in it neither brings them back nor has its file refused for a pupil the
    registry no longer knows. Returns the rows dropped (counted as ``erased`` in the manifest).

    With the file's ``data`` and the ``key`` it was read with, its numbers are also checked against
    the number tokens: a pupil erased under an earlier key is recognised, and their token under
    the current key is added to the list (so :func:`sweep` and later files see it too)."""
    tokens = erased_tokens(paths)
    cols = [c.staged_name for c in spec.staged_columns if c.staged_name in ID_COLUMNS]
    if not cols:
        return 0
    # numbers erased under an earlier key only (none until a rotation): the file is read for them
    numbers = erased_number_tokens(paths, key) if key is not None and data is not None else set()
    if numbers:
        found = _by_number(paths, spec, data, key, numbers)
        if found:
            add_erased(paths, list(found.items()), key)
            tokens |= set(found)
    if not tokens:
        return 0
    where = " OR ".join(f"sha256({c}) IN (SELECT unnest(?))" for c in cols)
    n = con.execute(f"DELETE FROM _typed WHERE {where}", [sorted(tokens)] * len(cols)).fetchall()[0][0]
    staged.identities = [r for r in staged.identities if token(r.pupil_id) not in tokens]
    if n:
        staged.rows_kept -= n
        staged.drop_reasons["erased"] = staged.drop_reasons.get("erased", 0) + n
    return n
