"""Rotating the pseudonym key: every pseudonym re-keyed, every row and join kept, the old key gone.

A pseudonym cannot be turned back into a number, so the new pseudonyms come from the department
files the platform keeps (``archive/``, and ``landing/``/``quarantine/``): each pupil or resident
number there gives the pair (old pseudonym, new pseudonym). Rotation refuses — changing nothing —
when a pseudonym held anywhere (warehouse, identity store, serving snapshots) has no number to be
re-keyed from.

Then: the warehouse is re-keyed in one transaction (every ``pupil_id``/``resident_id`` column, the
files whose 仮名ID column is rewritten repointed, ``governance.key_log`` written); the identity
store and the portal's support entries in one SQLite transaction each; each serving snapshot is
copied re-keyed to a new file that ``current`` follows; last, the new key replaces the old in the
key file, and the old key is retired (deleted: only its fingerprint stays in the log).

These are several stores, not one transaction: before the first of them changes, the new key is
written to ``pseudonym.key.rotating``. While that file is there nothing runs (the key cannot be
loaded), and ``toda keys rotate`` run again finishes the rotation with that key — a pseudonym
already re-keyed maps to itself.

The portal's audit log is not rewritten (hash-chained evidence of who saw what): its entries name
pupils by commitments whose secrets the audit subject store indexes by pseudonym, and that index
is re-pointed at the new pseudonyms (audit_subjects.rekey) — "who looked at pupil X" still answers
under the new pseudonym. A pseudonym held there with no number to re-key from is shredded.

The erasure list needs no re-keying: each erased person's line carries a number token
(HMAC under the erasure key, which is not rotated), and ingestion recognises the numbers of a
re-sent old export by it. Erasures recorded before number tokens existed (2026-11-30) hold only
``sha256(pseudonym)``, which stops matching under the new key: rotation refuses while any is
left, unless told to accept it (``--accept-legacy-erasures``).
"""

from __future__ import annotations

import hashlib
import os
import secrets
import sqlite3
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone

import duckdb

from toda_platform.governance.csvfiles import identifier_values, identifies, with_pseudonyms_replaced
from toda_platform.governance import audit_subjects
from toda_platform.governance.erasure import (PORTAL_SUPPORT, FileRewrite, _id_filter, apply_rewrites,
                                              ensure_tables, legacy_tokens, portal_support, register_map,
                                              replace_snapshot)
from toda_platform.governance.warehouse import base_tables_with
from toda_platform.identity import IdentityStore
from toda_platform.pseudonym import KEY_ENV, MIN_KEY_BYTES, pseudonymise, require_key, rotating_file
from toda_platform.settings import Paths

KEY_LOG_DDL = """CREATE TABLE IF NOT EXISTS governance.key_log (
    rotated_at TIMESTAMP NOT NULL, old_fingerprint VARCHAR NOT NULL, new_fingerprint VARCHAR NOT NULL,
    pseudonyms INTEGER NOT NULL, rows_rekeyed BIGINT NOT NULL, files_rewritten INTEGER NOT NULL,
    snapshots_rewritten INTEGER NOT NULL, identity_rows INTEGER NOT NULL)"""


class KeyRotationError(RuntimeError):
    pass


def fingerprint(key: bytes) -> str:
    """Names a key in the log without revealing it."""
    return hashlib.sha256(b"toda-key-fingerprint:" + key).hexdigest()[:16]


@dataclass
class RotationReport:
    old_fingerprint: str
    new_fingerprint: str
    pseudonyms: int = 0
    rows: dict[str, int] = field(default_factory=dict)
    files_rewritten: int = 0
    snapshots_rewritten: int = 0
    identity_rows: int = 0
    portal_rows: int = 0
    audit_subjects: int = 0  # audit subject secrets re-pointed at their new pseudonym
    audit_shredded: int = 0  # ... and those with no number to re-key from, shredded
    legacy_erasures: int = 0  # erasure tokens that no longer match after this rotation


def _department_files(paths: Paths):
    for skey, spec in paths.city.specs.items():
        if not identifies(spec):
            continue
        for kind, folder in (("archive", paths.archive / skey), ("landing", paths.landing_dir(skey)),
                             ("quarantine", paths.quarantine / skey)):
            if folder.is_dir():
                for p in sorted(folder.iterdir()):
                    if p.is_file() and not p.is_symlink() and not p.name.endswith(".reasons.json"):
                        yield spec, kind, p


def key_map(paths: Paths, old: bytes, new: bytes) -> dict[str, str]:
    """old pseudonym → new pseudonym for every number in the department files."""
    numbers: set[str] = set()
    for spec, _kind, p in _department_files(paths):
        numbers |= identifier_values(spec, p.read_bytes())
    return {pseudonymise(old, n): pseudonymise(new, n) for n in numbers}


def _id_columns(con) -> list[tuple[str, str]]:
    out = []
    for table in sorted(set(base_tables_with(con, "pupil_id")) | set(base_tables_with(con, "resident_id"))):
        if not table.startswith("governance."):
            out += [(table, c) for c in _id_filter(con, table)[1]]
    return out


def _unmapped(con) -> dict[str, int]:
    found = {}
    for table, col in _id_columns(con):
        n = con.execute(f"SELECT count(DISTINCT {col}) FROM {table} WHERE {col} IS NOT NULL AND "
                        f"{col} NOT IN (SELECT old FROM _key_map)").fetchone()[0]
        if n:
            found[f"{table}.{col}"] = n
    return found


def _snapshots(paths: Paths) -> list:
    return sorted(paths.serving.glob("snapshot_*.duckdb")) if paths.serving.is_dir() else []


def rotate(con: duckdb.DuckDBPyConnection, paths: Paths, *, new_key: bytes | None = None,
           accept_legacy_erasures: bool = False) -> RotationReport:
    if os.environ.get(KEY_ENV, "").strip():
        raise KeyRotationError(f"the key comes from {KEY_ENV}: rotation writes the new key to "
                               f"{paths.pseudonym_key_file}; unset {KEY_ENV} (or rotate where it is set)")
    old = require_key(paths.pseudonym_key_file, demo=paths.demo, allow_rotating=True)
    pending = rotating_file(paths.pseudonym_key_file)
    resuming = pending.exists()  # an interrupted rotation: finish it with the key it had drawn
    if resuming:
        new = pending.read_text(encoding="utf-8").strip().encode("utf-8")
        if new == old:  # it stopped after the new key was in place
            pending.unlink()
            return RotationReport(fingerprint(old), fingerprint(new))
    else:
        new = new_key or secrets.token_hex(32).encode()
    if len(new) < MIN_KEY_BYTES or new == old:
        raise KeyRotationError(f"the new key must differ from the old and hold at least {MIN_KEY_BYTES} bytes")
    report = RotationReport(fingerprint(old), fingerprint(new))
    report.legacy_erasures = len(legacy_tokens(paths))
    if report.legacy_erasures and not accept_legacy_erasures and not resuming:
        raise KeyRotationError(
            f"nothing changed: {report.legacy_erasures} erased pupils or residents are on the erasure list by "
            f"their pseudonym only (erasures before 2026-11-30); under a new key a re-sent old export would "
            f"bring them back. Run `toda erase --student-number N --reason ...` again for each erased pupil "
            f"(it adds the number's token; their data is already gone), or pass --accept-legacy-erasures")
    mapping = key_map(paths, old, new)
    report.pseudonyms = len(mapping)
    if resuming:  # some stores were re-keyed already: their new pseudonyms map to themselves
        mapping |= {v: v for v in list(mapping.values())}

    # refuse before anything changes if a pseudonym could not be re-keyed
    register_map(con, mapping)
    missing = _unmapped(con)
    store = IdentityStore(paths.identity)
    for where, held in (("identity store", _identity_ids(store)), ("portal support entries", portal_support(paths))):
        stray = [p for p in held if p not in mapping]
        if stray:
            missing[where] = len(stray)
    for snap in _snapshots(paths):
        s = duckdb.connect(str(snap), read_only=True)
        try:
            register_map(s, mapping)
            missing.update({f"{snap.name}:{k}": v for k, v in _unmapped(s).items()})
        finally:
            s.close()
    if missing:
        raise KeyRotationError("nothing changed: these pseudonyms have no pupil number in the kept department "
                               "files to re-key from: " + ", ".join(f"{k} ({v})" for k, v in missing.items()))

    # from here on stores change: the new key is kept first, so an interruption can be finished
    if not resuming:
        _write_key(pending, new)

    # files whose 仮名ID column holds pseudonyms (the portal's support records)
    rewrites: dict[tuple[str, str], FileRewrite] = {}
    for spec, kind, p in _department_files(paths):
        data = p.read_bytes()
        sha = hashlib.sha256(data).hexdigest()
        if (spec.key, sha) not in rewrites:
            rw = with_pseudonyms_replaced(spec, data, mapping)
            if rw is None:
                continue
            rewrites[(spec.key, sha)] = FileRewrite(spec, sha, rw)
        rewrites[(spec.key, sha)].copies.append((kind, p))
    report.files_rewritten = len(rewrites)

    ensure_tables(con)
    con.execute(KEY_LOG_DDL)
    now = datetime.now(timezone.utc).replace(tzinfo=None)

    def rekey() -> None:
        for table, col in _id_columns(con):
            n = con.execute(f"UPDATE {table} AS t SET {col} = m.new FROM _key_map m WHERE t.{col} = m.old"
                            ).fetchone()[0]
            report.rows[f"{table}.{col}"] = n

    apply_rewrites(con, paths, list(rewrites.values()), f"key-rotation-{now:%Y%m%d%H%M%S}", also=rekey)

    report.identity_rows = _rekey_identity(store, mapping)
    report.portal_rows = portal_support(paths, f"UPDATE {PORTAL_SUPPORT} SET pupil_id = ? WHERE pupil_id = ?",
                                        [[new, old] for old, new in mapping.items()])
    report.snapshots_rewritten = _rekey_snapshots(paths, mapping)
    report.audit_subjects, report.audit_shredded = audit_subjects.rekey(mapping, audit_subjects.store_path(paths))
    con.execute("INSERT INTO governance.key_log VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [now, report.old_fingerprint, report.new_fingerprint, report.pseudonyms,
                 sum(report.rows.values()), report.files_rewritten, report.snapshots_rewritten,
                 report.identity_rows])
    con.execute("CHECKPOINT")
    _write_key(paths.pseudonym_key_file, new)  # the new key takes the old one's place: the old is gone
    pending.unlink()
    return report


def _identity_ids(store: IdentityStore) -> list[str]:
    if not store.path.exists():
        return []
    con = sqlite3.connect(store.path, timeout=30)
    try:
        return [r[0] for r in con.execute("SELECT DISTINCT pupil_id FROM pupil_identity")]
    finally:
        con.close()


def _rekey_identity(store: IdentityStore, mapping: dict[str, str]) -> int:
    if not store.path.exists():
        return 0
    con = sqlite3.connect(store.path, timeout=30)
    try:
        with con:
            n = sum(con.execute("UPDATE pupil_identity SET pupil_id = ? WHERE pupil_id = ?", [new, old]).rowcount
                    for old, new in mapping.items())
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        con.execute("VACUUM")
    finally:
        con.close()
    return n


def _rekey_snapshots(paths: Paths, mapping: dict[str, str]) -> int:
    current = paths.serving / "current"
    pointed = current.resolve() if current.is_symlink() else None  # followed by replace_snapshot
    done = 0
    for snap in _snapshots(paths):
        replace_snapshot(paths, snap, "k", pointed, remap=mapping)
        done += 1
    return done


def _write_key(target, new: bytes) -> None:
    """``new`` written to ``target`` (mode 0600) in one step, replacing what was there."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".key-")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(new.decode("utf-8") + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, 0o600)
    os.replace(tmp, target)
