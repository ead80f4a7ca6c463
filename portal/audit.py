"""The hash-chained audit log: append and verify.

Each entry's hash is SHA-256 over its fields (sequence number included) and the previous entry's
hash. Editing an entry changes its hash; deleting one leaves a gap in the sequence and a broken
link; reordering (swapping contents or sequence numbers) breaks both. What the chain alone cannot
show is the loss of the newest entries (nothing follows them): each append also writes the new
head (sequence number and hash) to a witness file outside the portal's database
(``TODA_AUDIT_WITNESS``, default ``$TODA_HOME/audit/head.log``, mode 0600 — put it on other
storage in production), and ``verify`` fails when the database's head is behind the witness or
disagrees with it.

Entries never hold a pupil's pseudonym: ``subjects`` holds one *commitment* per pupil named,
HMAC-SHA256(the pupil's secret, a fixed label), whose secrets live apart from the log in the
erasable subject store (toda_platform/governance/audit_subjects.py). The chain covers the
commitments; erasure deletes the pupil's secret (crypto-shredding), so their entries stay, still
verify, and can no longer be tied to them; key rotation re-points the store's index at the new
pseudonyms, the chain is never rewritten. :func:`about` answers "who looked at pupil X".

Format 1 (until 2026-11-30) stored the pseudonyms themselves, in ``pupil_ids``. Migration 0002
verifies such a chain as it was (:func:`entry_hash_v1`, the witness included), refuses to touch
it if it is broken, and rewrites it in format 2 — pseudonyms to commitments, the pseudonyms and
the pseudonym part of old 記録番号 masked in ``detail`` — then appends an ``audit_format`` entry
saying so and witnesses the new head (:func:`upgrade`).
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
from toda_platform.governance import audit_subjects

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


def _hash(fields: dict) -> str:
    body = json.dumps(fields, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def _common(e) -> dict:
    return {"seq": e.seq, "at": e.at.isoformat(), "username": e.username, "role": e.role, "action": e.action,
            "school_code": e.school_code, "purpose": e.purpose, "outcome": e.outcome, "detail": e.detail,
            "prev": e.prev_hash}


def entry_hash(e: AuditEntry) -> str:
    """Format 2: the subjects' commitments, never their pseudonyms."""
    return _hash({**_common(e), "format": 2, "subjects": e.subjects})


def entry_hash_v1(e, pupil_ids: str) -> str:
    """Format 1 (the pseudonyms themselves): only to verify an old chain before it is upgraded."""
    return _hash({**_common(e), "pupil_ids": pupil_ids})


def masked(text: str, pupil_ids) -> str:
    """``text`` without the pseudonyms of ``pupil_ids``, nor the 6 characters of one that a
    記録番号 made before 2026-11-30 carried (P<time>-<6 hex>-<n>)."""
    for p in pupil_ids:
        if len(p) >= 6:
            text = text.replace(p, MASK).replace(f"-{p[:6]}-", f"-{MASK}-")
    return text


MASK = "＊"


def record(action: str, *, username: str, role: str = "", school_code: str = "",
           pupil_ids=(), purpose: str = "", outcome: str = "ok", detail: str = "") -> AuditEntry:
    """Append one entry. Never put a name in ``detail`` or ``purpose`` from code. Pupils are
    named in ``pupil_ids`` by their pseudonym, which is stored as its subject commitment only
    (and masked should it occur in ``detail`` or ``purpose``)."""
    pupil_ids = list(pupil_ids)
    subjects = audit_subjects.commit(pupil_ids, erased=_erased()) if pupil_ids else []
    with transaction.atomic():
        last = AuditEntry.objects.order_by("-seq").only("seq", "entry_hash").first()
        e = AuditEntry(seq=(last.seq + 1) if last else 1, at=timezone.now().replace(microsecond=0),
                       username=username[:150], role=role, action=action, school_code=school_code or "",
                       subjects=" ".join(subjects), purpose=masked(purpose, pupil_ids), outcome=outcome,
                       detail=masked(detail, pupil_ids), prev_hash=last.entry_hash if last else GENESIS)
        e.entry_hash = entry_hash(e)
        e.save()
        transaction.on_commit(lambda: _witness(e.seq, e.entry_hash))
    log.info("audit #%s %s %s %s %s", e.seq, username, action, outcome, school_code or "")
    return e


def _erased() -> set[str]:
    from toda_platform.governance.erasure import erased_tokens
    from toda_platform.settings import Paths

    return erased_tokens(Paths.from_env())


def about(pupil_id: str):
    """The entries naming this pupil (for an entitled auditor: who looked at them), oldest first;
    none for a pupil the subject store no longer holds (erased)."""
    c = audit_subjects.lookup([pupil_id]).get(pupil_id)
    if c is None:
        return AuditEntry.objects.none()
    # commitments are fixed-length hex words: a substring match is a word match
    return AuditEntry.objects.filter(subjects__contains=c).order_by("seq")


def pupils_of(e: AuditEntry) -> list[str]:
    """The pseudonyms an entry names, as far as the subject store still knows them."""
    found = audit_subjects.resolve(e.subjects.split())
    return [found[c] for c in e.subjects.split() if c in found]


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


def verify(entries=None, hash_of=entry_hash) -> Verdict:
    """The chain of ``entries`` (default: the log, in order) under ``hash_of``, and the witness."""
    prev, expected, n = GENESIS, 1, 0
    hashes: dict[int, str] = {}
    witnessed = _witnessed_head()
    if entries is None:
        entries = AuditEntry.objects.order_by("seq").iterator(chunk_size=2000)
    for e in entries:
        n += 1
        if e.seq != expected:
            return Verdict(False, n, expected, f"entry #{expected} is missing (the next one is #{e.seq}): deleted")
        if e.prev_hash != prev:
            return Verdict(False, n, e.seq, "its link to the previous entry does not match: "
                                            "an entry before it was deleted, replaced or moved")
        if hash_of(e) != e.entry_hash:
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


class LegacyChainBroken(RuntimeError):
    pass


def upgrade(model=AuditEntry) -> int:
    """Format 1 → 2 (migration 0002, with its historical model): verify the old chain as it was,
    refuse if it is broken (re-hashing would launder the tampering), then rewrite every entry
    with commitments for pseudonyms, re-link the chain, append an ``audit_format`` entry and
    witness the new head. Returns the entries rewritten (0 when there is nothing to upgrade)."""
    old = list(model.objects.order_by("seq"))
    if not old:
        return 0
    verdict = verify(old, lambda e: entry_hash_v1(e, e.subjects))
    if not verdict.ok:
        raise LegacyChainBroken(
            f"the audit log (format 1) is broken, so it is not upgraded: {verdict.message()}. Keep this "
            f"database as evidence; see README 'Data governance' (audit log) for what to do")
    # one transaction for the whole log; a pupil erased before the upgrade is not indexed again
    named = list(dict.fromkeys(p for e in old for p in e.subjects.split()))
    committed = dict(zip(named, audit_subjects.commit(named, erased=_erased())))
    prev = GENESIS
    for e in old:
        ids = e.subjects.split()
        e.subjects = " ".join(committed[p] for p in ids)
        e.detail, e.purpose = masked(e.detail, ids), masked(e.purpose, ids)
        e.prev_hash = prev
        e.entry_hash = prev = entry_hash(e)
    from django.db import connection

    with connection.cursor() as c:  # (bulk_update's CASE expressions take minutes on a large log)
        c.executemany(f"UPDATE {model._meta.db_table} SET subjects = %s, detail = %s, purpose = %s, prev_hash = %s, "
                      f"entry_hash = %s WHERE id = %s",
                      [(e.subjects, e.detail, e.purpose, e.prev_hash, e.entry_hash, e.pk) for e in old])
    note = model(seq=old[-1].seq + 1, at=timezone.now().replace(microsecond=0), username="migration",
                 role="", action="audit_format", school_code="", subjects="", purpose="", outcome="ok",
                 detail=f"entries #1-#{old[-1].seq} rewritten from format 1 (pseudonyms) to format 2 (subject "
                        f"commitments); the format 1 chain verified intact before ({verdict.checked} entries)",
                 prev_hash=prev)
    note.entry_hash = entry_hash(note)
    note.save()
    transaction.on_commit(lambda: _witness(note.seq, note.entry_hash))
    global upgraded
    upgraded = len(old)
    return len(old)


upgraded = 0  # entries upgraded by migration 0002 in this process (portal.commands.migrate vacuums then)
