"""What the landing sensor asks for: the sources with settled files the manifest has not seen.

A landing folder keeps its files after they are read (the archive holds a copy), so "new" cannot
mean "present". A settled file is *seen* when ``staging.file_manifest`` has a row for it with the
same name, size and modification time (``landed_at``): the sensor's first tick after ``toda demo``
finds every file seen and starts nothing, and a file touched or replaced since is new again.

The sensor's cursor keeps each folder's fingerprint, so a folder that did not change is not even
compared with the manifest — except the folders it asked a run for (``pending``): until the
manifest has seen their files, each tick looks again, and when no run for them is queued or
running any more (it failed, or was cancelled) it asks again. A failed run loses no file, even
if nobody touches the folder. Plain functions, no Dagster: ``assets/sensors.py`` wires them.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Iterable

from toda_platform.catalogue import CATALOGUE
from toda_platform.ingest import landed_files
from toda_platform.settings import Paths


@dataclass(frozen=True)
class LandedFile:
    name: str
    size: int
    mtime_ns: int

    @property
    def landed_at(self) -> datetime:
        """As the manifest records it (UTC, naive, microseconds)."""
        return datetime.fromtimestamp(self.mtime_ns / 1e9, timezone.utc).replace(tzinfo=None)


def settled(paths: Paths, source_key: str, now: float | None = None) -> list[LandedFile]:
    """The files a run would read now ("settled": the ingestion's own rule, see ``scan_landing``)."""
    now = time.time() if now is None else now
    return [LandedFile(p.name, st.st_size, st.st_mtime_ns)
            for p in landed_files(paths.landing_dir(source_key), now=now) if (st := p.lstat())]


def signature(files: Iterable[LandedFile]) -> str | None:
    """A fingerprint of a folder's settled files (None when there are none)."""
    rows = sorted((f.name, f.size, f.mtime_ns) for f in files)
    return hashlib.sha256(json.dumps(rows).encode()).hexdigest()[:16] if rows else None


Seen = dict[str, dict[str, list[tuple[int | None, datetime | None]]]]


def manifest_seen(con) -> Seen:
    """source key -> file name -> (size, landed_at) of every file the manifest recorded."""
    has = con.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'staging' "
                      "AND table_name = 'file_manifest'").fetchone()[0]
    seen: Seen = {}
    if has:
        for key, name, size, landed in con.execute(
                "SELECT DISTINCT source_key, file_name, size_bytes, landed_at FROM staging.file_manifest").fetchall():
            seen.setdefault(key, {}).setdefault(name, []).append((size, landed))
    return seen


def is_seen(f: LandedFile, seen: dict[str, list]) -> bool:
    """The manifest holds this file: same name and size, modification time within a millisecond."""
    return any((size is None or size == f.size) and landed is not None
               and abs((landed - f.landed_at).total_seconds()) < 1e-3
               for size, landed in seen.get(f.name, ()))


PENDING = "pending"  # the cursor's list of source keys asked for and not yet seen in the manifest


@dataclass(frozen=True)
class Tick:
    to_stage: list[str]  # source keys with settled files the manifest has not seen
    cursor: dict  # source key -> fingerprint of its settled files; PENDING -> source keys
    retried: list[str] = ()  # of to_stage: asked for before, and no run for them is left


def evaluate(paths: Paths, cursor: dict, seen_of, now: float | None = None,
             running=lambda: set()) -> Tick:
    """Which sources to stage now. ``seen_of()`` returns :func:`manifest_seen` of the warehouse; it
    is called only when a folder's fingerprint changed (the first tick: every folder) or a folder
    asked for is still unseen. ``running()``: the source keys of landing runs queued or running."""
    cursor = dict(cursor)
    pending = list(cursor.pop(PENDING, []))
    changed: dict[str, list[LandedFile]] = {}
    current: dict[str, list[LandedFile]] = {}
    for key in CATALOGUE:
        files = settled(paths, key, now)
        current[key] = files
        sig = signature(files)
        if sig is None:
            cursor.pop(key, None)
        elif cursor.get(key) != sig:
            changed[key] = files
            cursor[key] = sig
    active = running() if pending else set()
    recheck = {k: current[k] for k in pending if k not in changed and k not in active and current[k]}
    if not changed and not recheck:
        return Tick([], {**cursor, **({PENDING: sorted(k for k in pending if k in active)} if pending else {})})
    seen = seen_of()
    unseen = [k for k, files in {**changed, **recheck}.items() if any(not is_seen(f, seen.get(k, {})) for f in files)]
    to_stage = [k for k in CATALOGUE if k in unseen]
    still = sorted(set(to_stage) | {k for k in pending if k in active})
    return Tick(to_stage, {**cursor, **({PENDING: still} if still else {})},
                retried=[k for k in to_stage if k in recheck])
