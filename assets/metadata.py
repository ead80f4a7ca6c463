"""Metadata as an engineer reads it in the Dagster UI: one place for its formatting.

* numbers rounded (3 decimals; small ones to 3 significant figures), never 16 digits;
* dates as dates (``2025-11-05``), a time only where there is one;
* tables and long texts as Markdown, which the UI shows whole (plain text values are clipped);
* ordered things (bands by severity) as table rows, whose order the UI keeps — a JSON object's
  keys are shown sorted.
"""

from __future__ import annotations

import datetime as dt
import math

import dagster as dg
import numpy as np
import pandas as pd

DIGITS = 3


def number(x: float, digits: int = DIGITS) -> float | None:
    """``x`` rounded for reading: ``digits`` decimals, or ``digits`` significant figures when
    that would round a non-zero value to zero; None for NaN."""
    x = float(x)
    if not math.isfinite(x):
        return None
    if x == 0 or abs(x) >= 10 ** -digits:
        return round(x, digits)
    return float(f"{x:.{digits}g}")


def date_text(value) -> str:
    """A date as ``YYYY-MM-DD``; a timestamp with a time of day as ``YYYY-MM-DD HH:MM``."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value.isoformat()
    ts = pd.Timestamp(value)
    if pd.isna(ts):
        return ""
    return ts.strftime("%Y-%m-%d") if ts == ts.normalize() else ts.strftime("%Y-%m-%d %H:%M")


def clean(value, digits: int = DIGITS):
    """JSON-ready ``value`` with numbers rounded and dates as text (recursively)."""
    if isinstance(value, dict):
        return {str(k): clean(v, digits) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [clean(v, digits) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return number(value, digits)
    if isinstance(value, (dt.date, pd.Timestamp, np.datetime64)):
        return date_text(value)
    return value


def frame_for_reading(frame: pd.DataFrame, digits: int = DIGITS) -> pd.DataFrame:
    """A copy of ``frame`` with dates as text and numbers rounded, column order and row order kept."""
    out = frame.copy()
    for c in out.columns:
        col = out[c]
        if pd.api.types.is_datetime64_any_dtype(col) or col.map(
                lambda v: isinstance(v, (dt.date, pd.Timestamp))).any():
            out[c] = col.map(lambda v: date_text(v) if v is not None and not (
                isinstance(v, float) and math.isnan(v)) else "")
        elif pd.api.types.is_float_dtype(col):  # object dtype keeps None (shown as a dash)
            out[c] = pd.Series([number(v, digits) for v in col], index=col.index, dtype=object)
    return out


def md_table(frame: pd.DataFrame, digits: int = DIGITS) -> dg.MetadataValue:
    """A table the UI shows whole, in the frame's own row order."""
    if frame is None or frame.empty:
        return dg.MetadataValue.md("_none_")
    return dg.MetadataValue.md(frame_for_reading(frame, digits).to_markdown(index=False, missingval="–"))


def json_value(value, digits: int = DIGITS) -> dg.MetadataValue:
    return dg.MetadataValue.json(clean(value, digits))


def text(value: str) -> dg.MetadataValue:
    """A long sentence, shown whole (Markdown, not a clipped text value)."""
    return dg.MetadataValue.md(str(value))
