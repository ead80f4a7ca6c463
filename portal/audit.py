"""The hash-chained audit log: append and verify.

Each entry's hash is SHA-256 over its fields (sequence number included) and the previous entry's
hash. Editing an entry changes its hash; deleting one leaves a gap in the sequence and a broken
link; reordering (swapping contents or sequence numbers) breaks both. What the chain alone cannot
show is the loss of the newest entries (nothing follows them): each append also writes the new
head (sequence number and hash) to a witness file outside the portal's database
(``TODA_AUDIT_WITNESS``, default ``$TODA_HOME/audit/head.log``, mode 0600 — put it on other
storage in production), and ``verify`` fails when the database's head is behind the witness or
disagrees with it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from django.db import transaction
from django.utils import timezone

from portal.models import AuditEntry

GENESIS = "0" * 64
WITNESS_ENV = "TODA_AUDIT_WITNESS"
log = logging.getLogger("portal.audit")


def witness_path() -> Path:
    from toda_platform.settings import Paths

    return Path(os.environ.get(WITNESS_ENV) or Paths.from_env().home / "audit" / "head.log")


def _witness(seq: int, digest: str) -> None:
    path = witness_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(fd, "a", encoding="ascii") as f:
        f.write(f"{seq} {digest}\n")


def _witnessed_head() -> tuple[int, str] | None:
    path = witness_path()
    if not path.exists():
        return None
    with path.open("rb") as f:
        f.seek(max(path.stat().st_size - 200, 0))
        lines = [ln for ln in f.read().decode("ascii", "replace").splitlines() if ln.strip()]
    if not lines:
        return None
    seq, digest = lines[-1].split()[:2]
    return int(seq), digest


def entry_hash(e: AuditEntry) -> str:
    body = json.dumps({
        "seq": e.seq, "at": e.at.isoformat(), "username": e.username, "role": e.role,
        "action": e.action, "school_code": e.school_code, "pupil_ids": e.pupil_ids,
        "purpose": e.purpose, "outcome": e.outcome, "detail": e.detail, "prev": e.prev_hash,
    }, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def record(action: str, *, username: str, role: str = "", school_code: str = "",
           pupil_ids=(), purpose: str = "", outcome: str = "ok", detail: str = "") -> AuditEntry:
    """Append one entry. Never put a name in ``detail`` or ``purpose`` from code: pupils are
    named by their pseudonym only."""
    with transaction.atomic():
        last = AuditEntry.objects.order_by("-seq").only("seq", "entry_hash").first()
        e = AuditEntry(seq=(last.seq + 1) if last else 1, at=timezone.now().replace(microsecond=0),
                       username=username[:150], role=role, action=action, school_code=school_code or "",
                       pupil_ids=" ".join(pupil_ids), purpose=purpose, outcome=outcome, detail=detail,
                       prev_hash=last.entry_hash if last else GENESIS)
        e.entry_hash = entry_hash(e)
        e.save()
        transaction.on_commit(lambda: _witness(e.seq, e.entry_hash))
    log.info("audit #%s %s %s %s %s", e.seq, username, action, outcome, school_code or "")
    return e


@dataclass
class Verdict:
    ok: bool
    checked: int
    bad_seq: int | None = None
    reason: str = ""
    head_seq: int = 0
    head_hash: str = GENESIS

    def message(self) -> str:
        if self.ok:
            return (f"audit log intact: {self.checked} entries, head #{self.head_seq} "
                    f"{self.head_hash[:16]}")
        return f"audit log broken at entry #{self.bad_seq}: {self.reason} ({self.checked} entries checked)"


def verify() -> Verdict:
    prev, expected, n = GENESIS, 1, 0
    hashes: dict[int, str] = {}
    witnessed = _witnessed_head()
    for e in AuditEntry.objects.order_by("seq").iterator(chunk_size=2000):
        n += 1
        if e.seq != expected:
            return Verdict(False, n, expected, f"entry #{expected} is missing (the next one is #{e.seq}): deleted")
        if e.prev_hash != prev:
            return Verdict(False, n, e.seq, "its link to the previous entry does not match: "
                                            "an entry before it was deleted, replaced or moved")
        if entry_hash(e) != e.entry_hash:
            return Verdict(False, n, e.seq, "its content does not match its hash: edited or moved")
        prev, expected = e.entry_hash, expected + 1
        if witnessed is not None and e.seq == witnessed[0]:
            hashes[e.seq] = e.entry_hash
    head = expected - 1
    if witnessed is not None:
        seq, digest = witnessed
        if seq > head:
            return Verdict(False, n, head + 1, f"the newest entries #{head + 1}–#{seq} are missing: deleted "
                                               f"(the witness {witness_path()} records #{seq})")
        if hashes.get(seq) != digest:
            return Verdict(False, n, seq, "it does not match the hash the witness file recorded for it: "
                                          "replaced")
    return Verdict(True, n, head_seq=head, head_hash=prev)
