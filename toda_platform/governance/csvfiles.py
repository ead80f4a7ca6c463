"""Rewriting a department's CSV without some pupils' rows, byte for byte otherwise.

The archive, landing and quarantine copies of a file are rewritten the same way (same bytes in,
same bytes out), so the copies keep matching each other and the manifest's new hash. Records are
split on line ends outside quotes; every other record is kept exactly as it was, in the file's own
encoding (a UTF-8 BOM stays).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from typing import Callable

from toda_platform.catalogue import SourceSpec
from toda_platform.pseudonym import pseudonymise

IDENTIFIER_KINDS = ("pupil_number", "resident_number")


@dataclass
class Rewritten:
    data: bytes
    removed: int
    # raw values of the removed rows' personal cells (numbers, names): searched for, then forgotten
    needles: set[str] = field(default_factory=set)


def decode(data: bytes) -> tuple[str, str]:
    if data.startswith(b"\xef\xbb\xbf"):
        return data.decode("utf-8-sig"), "utf-8-sig"
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return data.decode("cp932"), "cp932"


def records(text: str) -> list[str]:
    """Raw records with their line ends; a quoted field may span lines."""
    out, current, quotes = [], [], 0
    for line in text.splitlines(keepends=True):
        current.append(line)
        quotes += line.count('"')
        if quotes % 2 == 0:
            out.append("".join(current))
            current, quotes = [], 0
    if current:
        out.append("".join(current))
    return out


def identifies(spec: SourceSpec) -> bool:
    return any(c.kind in IDENTIFIER_KINDS or c.pseudonym_headers for c in spec.columns)


def without(spec: SourceSpec, data: bytes, key: bytes, is_target: Callable[[str], bool]) -> Rewritten | None:
    """``data`` without the rows whose pupil or resident number pseudonymises to a target (or
    whose 仮名ID is one); None when no row matches (or the file cannot be read)."""
    from toda_platform.ingest import _delimiter, normalise_header

    try:
        text, encoding = decode(data)
    except UnicodeDecodeError:
        return None
    recs = records(text)
    head = next((i for i, r in enumerate(recs) if r.strip()), None)
    if head is None:
        return None
    delim = _delimiter(recs[head].splitlines()[0])
    headers = [normalise_header(h) for h in next(csv.reader([recs[head]], delimiter=delim))]
    hashed, direct, personal = [], [], []
    for col in spec.columns:
        for i, h in enumerate(headers):
            if h in {normalise_header(x) for x in col.headers} and col.kind in IDENTIFIER_KINDS:
                hashed.append(i)
            elif h in {normalise_header(x) for x in col.pseudonym_headers}:
                direct.append(i)
            if h in {normalise_header(x) for x in col.accepted_headers} and (
                    col.kind in IDENTIFIER_KINDS or col.pii == "identity"):
                personal.append(i)
    if not hashed and not direct:
        return None
    kept, removed, needles = recs[:head + 1], 0, set()
    for rec in recs[head + 1:]:
        fields = next(csv.reader([rec], delimiter=delim), []) if rec.strip() else []
        ids = {pseudonymise(key, fields[i]) for i in hashed if i < len(fields) and fields[i].strip()}
        ids |= {fields[i].strip() for i in direct if i < len(fields)}
        if any(is_target(i) for i in ids):
            removed += 1
            needles |= {fields[i].strip() for i in personal if i < len(fields) and len(fields[i].strip()) >= 2}
        else:
            kept.append(rec)
    if not removed:
        return None
    return Rewritten("".join(kept).encode(encoding), removed, needles)
