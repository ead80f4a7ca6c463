"""Rewriting a department's CSV without some pupils' rows, byte for byte otherwise.

The archive, landing and quarantine copies of a file are rewritten the same way (same bytes in,
same bytes out), so the copies keep matching each other and the manifest's new hash. Records are
split on line ends outside quotes; every other record is kept exactly as it was, in the file's own
encoding (a UTF-8 BOM stays).
"""

from __future__ import annotations

import csv
import io
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
    return any(c.kind in IDENTIFIER_KINDS or c.accepts_pseudonym for c in spec.columns)


@dataclass
class Parsed:
    encoding: str
    delimiter: str
    records: list[str]
    head: int  # index of the header record
    hashed: list[int]  # positions of pupil / resident numbers (pseudonymised on the way in)
    direct: list[int]  # positions of 仮名ID (already pseudonyms)
    personal: list[int]  # positions of numbers and names (identity columns)

    def rows(self):
        """(index, fields) of each data record."""
        for i in range(self.head + 1, len(self.records)):
            rec = self.records[i]
            yield i, (next(csv.reader([rec], delimiter=self.delimiter), []) if rec.strip() else [])


def parse(spec: SourceSpec, data: bytes) -> Parsed | None:
    """A department file split into records, with where its identifiers are; None when it cannot
    be read or holds no identifier."""
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
        names = {normalise_header(x) for x in col.headers}
        pseudo = {normalise_header(x) for x in col.pseudonym_headers}
        for i, h in enumerate(headers):
            if h in names and col.kind in IDENTIFIER_KINDS:
                hashed.append(i)
            elif h in pseudo:
                direct.append(i)
            if (h in names or h in pseudo) and (col.kind in IDENTIFIER_KINDS or col.pii == "identity"):
                personal.append(i)
    if not hashed and not direct:
        return None
    return Parsed(encoding, delim, recs, head, hashed, direct, personal)


def _cell(fields: list[str], i: int) -> str:
    return fields[i].strip() if i < len(fields) else ""


def without(spec: SourceSpec, data: bytes, key: bytes, is_target: Callable[[str], bool]) -> Rewritten | None:
    """``data`` without the rows whose pupil or resident number pseudonymises to a target (or
    whose 仮名ID is one); None when no row matches (or the file cannot be read)."""
    parsed = parse(spec, data)
    if parsed is None:
        return None
    drop, needles, seen = set(), set(), {}

    def pseudonym(raw: str) -> str:  # a monthly file repeats each number on every school day
        if raw not in seen:
            seen[raw] = pseudonymise(key, raw)
        return seen[raw]

    for i, fields in parsed.rows():
        ids = {pseudonym(_cell(fields, j)) for j in parsed.hashed if _cell(fields, j)}
        ids |= {_cell(fields, j) for j in parsed.direct if _cell(fields, j)}
        if any(is_target(x) for x in ids):
            drop.add(i)
            needles |= {_cell(fields, j) for j in parsed.personal if len(_cell(fields, j)) >= 2}
    if not drop:
        return None
    kept = [r for i, r in enumerate(parsed.records) if i not in drop]
    return Rewritten("".join(kept).encode(parsed.encoding), len(drop), needles)


def identifier_values(spec: SourceSpec, data: bytes) -> set[str]:
    """The raw pupil and resident numbers of a file (for re-keying)."""
    parsed = parse(spec, data)
    if parsed is None:
        return set()
    # one csv pass over the data records (twice as fast as a reader per record)
    rows = csv.reader(io.StringIO("".join(parsed.records[parsed.head + 1:])), delimiter=parsed.delimiter)
    return {c for f in rows for j in parsed.hashed if (c := _cell(f, j))}


def with_pseudonyms_replaced(spec: SourceSpec, data: bytes, mapping: dict[str, str]) -> Rewritten | None:
    """``data`` with each 仮名ID replaced through ``mapping`` (a key rotation); None when the file
    has no 仮名ID to change."""
    parsed = parse(spec, data)
    if parsed is None or not parsed.direct:
        return None
    out, changed = list(parsed.records), 0
    for i, fields in parsed.rows():
        hits = [j for j in parsed.direct if mapping.get(_cell(fields, j), _cell(fields, j)) != _cell(fields, j)]
        if not hits:
            continue
        for j in hits:
            fields[j] = mapping[fields[j].strip()]
        rec = parsed.records[i]
        ending = rec[len(rec.rstrip("\r\n")):]
        buf = io.StringIO()
        csv.writer(buf, delimiter=parsed.delimiter, lineterminator=ending).writerow(fields)
        out[i] = buf.getvalue()
        changed += 1
    if not changed:
        return None
    return Rewritten("".join(out).encode(parsed.encoding), 0)
