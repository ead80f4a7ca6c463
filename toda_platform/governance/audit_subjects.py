"""The audit log's subject store: the erasable half of the portal's audit trail (crypto-shredding).

The portal's hash-chained audit log (portal/audit.py) never holds a pupil's pseudonym. Where an
entry names pupils it holds, for each, a *subject commitment*::

    commitment = HMAC-SHA256(secret, "toda-audit-subject:v2"), first 32 hex characters

where ``secret`` is 32 random bytes drawn for that pupil the first time the log names them. The
secrets live here, apart from the log, in their own SQLite file (``$TODA_HOME/audit/subjects.sqlite``,
or ``TODA_AUDIT_SUBJECTS``; folder 0700, file 0600), indexed by the pupil's current pseudonym:

* "who looked at pupil X" (an auditor): X's secret gives X's commitment, and the entries holding
  it are the answer (:func:`lookup`, ``toda audit who``, the portal's 監査ログ page);
* erasure (``toda erase``) deletes X's row here (:func:`shred`; ``secure_delete`` zeroes the
  freed bytes, then the file is vacuumed): the entries keep their commitment and the chain still
  verifies, but nothing links that commitment to X any more — a random 128-bit value;
* key rotation (``toda keys rotate``) re-points the index at the new pseudonyms (:func:`rekey`):
  the secrets, and so the commitments in the chain, do not change.

The commitment does not depend on the pseudonym (it is keyed by the pupil's secret over a fixed
label), so a rotation never touches the chain. It is the same in every entry about a pupil, so the
misuse rules still count distinct pupils per user and day; after erasure the entries about the
erased pupil remain linkable to *each other* (one anonymous subject), not to the pupil.

Plain sqlite3 (no Django): erasure and rotation run without the portal.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import sqlite3
from contextlib import closing
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Mapping

from toda_platform.settings import Paths

STORE_ENV = "TODA_AUDIT_SUBJECTS"
LABEL = b"toda-audit-subject:v2"
COMMITMENT_HEX_CHARS = 32
DDL = ("CREATE TABLE IF NOT EXISTS audit_subject (pupil_id TEXT PRIMARY KEY, secret BLOB NOT NULL, "
       "created_at TEXT NOT NULL)")


def store_path(paths: Paths | None = None) -> Path:
    env = os.environ.get(STORE_ENV, "").strip()
    if env:
        return Path(env)
    return (paths or Paths.from_env()).home / "audit" / "subjects.sqlite"


def commitment(secret: bytes) -> str:
    return hmac.new(secret, LABEL, hashlib.sha256).hexdigest()[:COMMITMENT_HEX_CHARS]


def _connect(path: Path, *, create: bool) -> sqlite3.Connection | None:
    if not path.exists():
        if not create:
            return None
        path.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(path.parent, 0o700)
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    con = sqlite3.connect(path, timeout=30, isolation_level=None)
    # a deleted secret is overwritten in the file, not left in a free page; a rollback journal
    # (not WAL) so no second copy of a page outlives the transaction
    con.execute("PRAGMA secure_delete = ON")
    con.execute("PRAGMA journal_mode = DELETE")
    con.execute(DDL)
    return con


def commit(pupil_ids: Iterable[str], path: Path | None = None, *, erased: set[str] = frozenset()) -> list[str]:
    """The commitments of ``pupil_ids`` (in order), drawing a secret for each pupil not yet held.
    A pupil whose token (``sha256(pseudonym)``) is in ``erased`` — a stale link to an erased pupil,
    refused — gets a commitment whose secret is never stored: the store never learns them again."""
    ids = list(pupil_ids)
    if not ids:
        return []
    gone = {p: commitment(secrets.token_bytes(32)) for p in dict.fromkeys(ids)
            if erased and hashlib.sha256(p.encode("utf-8")).hexdigest() in erased}
    if gone:
        kept = [p for p in ids if p not in gone]
        held = dict(zip(kept, commit(kept, path)))
        return [gone.get(p) or held[p] for p in ids]
    with closing(_connect(path or store_path(), create=True)) as con:
        held = _secrets(con, ids)  # the usual case: every pupil known, nothing to write
        missing = [p for p in dict.fromkeys(ids) if p not in held]
        if missing:
            now = datetime.now(timezone.utc).isoformat(timespec="seconds")
            con.execute("BEGIN IMMEDIATE")
            try:
                con.executemany("INSERT OR IGNORE INTO audit_subject VALUES (?, ?, ?)",
                                [(p, secrets.token_bytes(32), now) for p in missing])
                held.update(_secrets(con, missing))
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
    return [commitment(held[p]) for p in ids]


def _secrets(con: sqlite3.Connection, ids: list[str]) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    unique = list(dict.fromkeys(ids))
    for i in range(0, len(unique), 500):
        chunk = unique[i:i + 500]
        out.update(con.execute(f"SELECT pupil_id, secret FROM audit_subject WHERE pupil_id IN "
                               f"({','.join('?' * len(chunk))})", chunk).fetchall())
    return out


def lookup(pupil_ids: Iterable[str], path: Path | None = None) -> dict[str, str]:
    """pseudonym → commitment for the pupils the store holds (an erased pupil has none)."""
    con = _connect(path or store_path(), create=False)
    if con is None:
        return {}
    with closing(con):
        return {p: commitment(s) for p, s in _secrets(con, list(pupil_ids)).items()}


def resolve(commitments: Iterable[str], path: Path | None = None) -> dict[str, str]:
    """commitment → pseudonym, for the commitments whose pupil the store still holds."""
    wanted = set(commitments)
    con = _connect(path or store_path(), create=False)
    if con is None or not wanted:
        return {}
    with closing(con):
        out = {}
        for pupil_id, secret in con.execute("SELECT pupil_id, secret FROM audit_subject"):
            c = commitment(secret)
            if c in wanted:
                out[c] = pupil_id
        return out


def held(path: Path | None = None) -> list[str]:
    con = _connect(path or store_path(), create=False)
    if con is None:
        return []
    with closing(con):
        return [p for (p,) in con.execute("SELECT pupil_id FROM audit_subject ORDER BY 1")]


def _vacuum(con: sqlite3.Connection) -> None:
    con.execute("VACUUM")


def shred(pupil_ids: Iterable[str], path: Path | None = None) -> int:
    """Erasure: forget the secrets of ``pupil_ids``; their entries can no longer be tied to them."""
    con = _connect(path or store_path(), create=False)
    if con is None:
        return 0
    with closing(con):
        n = sum(con.execute("DELETE FROM audit_subject WHERE pupil_id = ?", [p]).rowcount for p in set(pupil_ids))
        _vacuum(con)
    return n


def unmapped(mapping: Mapping[str, str], path: Path | None = None) -> list[str]:
    """Pseudonyms held here that a rotation's ``mapping`` does not re-key."""
    return [p for p in held(path) if p not in mapping]


def rekey(mapping: Mapping[str, str], path: Path | None = None) -> tuple[int, int]:
    """Key rotation: point each secret at the pupil's new pseudonym, in one transaction. A pupil
    the mapping does not know (no number left in the kept files: their data is gone, or a refused
    request named no real pupil) is shredded — the old pseudonym must not outlive its key.
    Returns (re-keyed, shredded)."""
    con = _connect(path or store_path(), create=False)
    if con is None:
        return 0, 0
    with closing(con):
        con.execute("BEGIN IMMEDIATE")
        try:
            rows = con.execute("SELECT pupil_id, secret, created_at FROM audit_subject").fetchall()
            con.execute("DELETE FROM audit_subject")
            kept = [(mapping[p], s, at) for p, s, at in rows if p in mapping]
            con.executemany("INSERT INTO audit_subject VALUES (?, ?, ?)", kept)
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        _vacuum(con)
    return len(kept), len(rows) - len(kept)
