"""The hash-chained audit log: append and verify.

Each entry's hash is SHA-256 over its fields (sequence number included) and the previous entry's
hash. Editing an entry changes its hash; deleting one leaves a gap in the sequence and a broken
link; reordering (swapping contents or sequence numbers) breaks both. What the chain alone cannot
show is the loss of the newest entries (nothing follows them): ``verify`` reports the head
(sequence number and hash) so that it can be compared with a copy kept elsewhere.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from portal.models import AuditEntry

GENESIS = "0" * 64
log = logging.getLogger("portal.audit")


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
    return Verdict(True, n, head_seq=expected - 1, head_hash=prev)
