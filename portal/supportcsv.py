"""Case-meeting entries go back into the platform through the ingestion gate, as files.

Each save writes one new file in the support_records export format (UTF-8 with BOM, the
catalogue's Japanese headers and values) into ``$TODA_HOME/landing/support_records/``, named
``支援記録_portal_<YYYYmmddHHMMSS>_<n>.csv``: written under a name starting with ``.`` (which
ingestion ignores) and renamed into place, so the sensor never sees half a file. An outcome is
recorded by sending the case's row again, same 記録番号, with 経過 filled.

The portal knows pupils only by their pseudonym: the row carries it in the column ``仮名ID``
instead of ``学籍番号`` (which the portal never holds). See README "School portal" for what the
gate needs to accept it.
"""

from __future__ import annotations

import csv
import io
import os
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from portal.serving import japanese_labels
from toda_platform.settings import Paths

SOURCE = "support_records"
TOKYO = ZoneInfo("Asia/Tokyo")


def headers(city) -> list[str]:
    """The header line, as the city's file names support_records' columns (the pupil by its 仮名ID)."""
    spec = city.spec(SOURCE)
    return [spec.column("pupil_id").pseudonym_headers[0] if c == "pupil_id" else spec.column(c).header
            for c in ("case_id", "decided_on", "school_code", "pupil_id", "risk_band", "action", "agency",
                      "outcome", "review_on")]


def choices(column: str, city=None) -> list[tuple[str, str]]:
    """(code, Japanese label) pairs of a support_records column, in the city file's order."""
    return list(japanese_labels(SOURCE, column, city).items())


def row_of(entry, city=None) -> list[str]:
    label = {c: dict(choices(c, city)) for c in ("action", "agency", "outcome")}
    return [entry.case_id, entry.decided_on.isoformat(), entry.school_code, entry.pupil_id,
            entry.risk_band or "なし", label["action"][entry.action], label["agency"][entry.agency],
            label["outcome"].get(entry.outcome, "") if entry.outcome else "",
            entry.review_on.isoformat() if entry.review_on else ""]


def write_landing_file(entry, paths: Paths | None = None, *, now: datetime | None = None) -> Path:
    paths = paths or Paths.from_env()
    folder = paths.landing_dir(SOURCE)
    folder.mkdir(parents=True, exist_ok=True)
    stamp = (now or datetime.now(TOKYO)).strftime("%Y%m%d%H%M%S")
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\r\n").writerows([headers(paths.city), row_of(entry, paths.city)])
    n = entry.pk or 0
    while True:
        final = folder / f"支援記録_portal_{stamp}_{n}.csv"
        if not final.exists():
            break
        n += 1
    tmp = folder / f".{final.name}.{os.getpid()}.tmp"
    with open(tmp, "wb") as f:
        f.write(buf.getvalue().encode("utf-8-sig"))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, final)
    return final
