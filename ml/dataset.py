"""Model frames: ``marts.pupil_features`` joined to ``marts.labels`` for the cohort.

One row per (pupil, as-of date) of the cohort (``in_cohort``: enrolled and not yet meeting the
definition). Feature columns come back as float32 (booleans 0/1, NULL as NaN); ``grade`` is
also a model input. The label columns are joined for training and evaluation only: nothing
here is a feature.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import duckdb
import numpy as np
import pandas as pd

from ml.feature_groups import EXTRA_FEATURES, group_of
from ml.features import FEATURES_TABLE, ID_COLUMNS

LABELS_TABLE = "marts.labels"
NUMERIC_TYPES = ("BOOLEAN", "TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT",
                 "USMALLINT", "UINTEGER", "UBIGINT", "FLOAT", "DOUBLE", "REAL")
# joined from marts.labels: targets and evaluation helpers, never model inputs
LABEL_COLUMNS = ("label", "label_available", "futoukou_prev_year", "nonillness_absent_days",
                 "date_30th_nonillness_absence")


def table_exists(con: duckdb.DuckDBPyConnection, table: str) -> bool:
    schema, name = table.split(".")
    return bool(con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = ? AND table_name = ?",
        [schema, name]).fetchone()[0])


def model_feature_columns(con: duckdb.DuckDBPyConnection, table: str = FEATURES_TABLE) -> list[str]:
    """Numeric and boolean columns of the feature table that belong to a source group, plus
    ``grade``. A column of a type a model cannot read (text, dates) is left out; a column of no
    known group raises (see :mod:`ml.feature_groups`)."""
    rows = con.execute(f"DESCRIBE {table}").fetchall()
    out = []
    for name, dtype, *_ in rows:
        if name in ID_COLUMNS and name not in EXTRA_FEATURES:
            continue
        if not any(dtype.upper().startswith(t) for t in NUMERIC_TYPES) and not dtype.upper().startswith("DECIMAL"):
            continue
        group_of(name)
        out.append(name)
    return out


def load_frame(con: duckdb.DuckDBPyConnection, *, years: Iterable[int] | None = None,
               kinds: Sequence[str] = ("month_start",), labelled_only: bool = False,
               as_of_dates: Iterable | None = None, features: Sequence[str] | None = None,
               table: str = FEATURES_TABLE) -> pd.DataFrame:
    """The cohort rows with their features and labels, oldest as-of date first."""
    feats = list(features) if features is not None else model_feature_columns(con, table)
    present = {r[0] for r in con.execute(f"DESCRIBE {table}").fetchall()}
    sel = [f'CAST(f."{c}" AS FLOAT) AS "{c}"' if c in present else f'CAST(NULL AS FLOAT) AS "{c}"'
           for c in feats if c != "grade"]
    where = ["l.in_cohort"]
    params: list = []
    if kinds:
        where.append(f"f.as_of_kind IN ({', '.join('?' for _ in kinds)})")
        params += list(kinds)
    if years is not None:
        ys = [int(y) for y in years]
        if not ys:
            where.append("false")
        else:
            where.append(f"f.school_year IN ({', '.join(map(str, ys))})")
    if as_of_dates is not None:
        ds = list(as_of_dates)
        where.append(f"f.as_of_date IN ({', '.join('?' for _ in ds)})" if ds else "false")
        params += ds
    if labelled_only:
        where.append("l.label_available")
    ids = ", ".join(f"f.{c}" for c in ID_COLUMNS)
    labels = ", ".join(f"l.{c}" for c in LABEL_COLUMNS)
    sql = f"""
        SELECT {ids}, {labels}, {", ".join(sel) if sel else "NULL AS _none"}
        FROM {table} f JOIN {LABELS_TABLE} l USING (pupil_id, as_of_date)
        WHERE {" AND ".join(where)}
        ORDER BY f.as_of_date, f.school_code, f.pupil_id
    """
    frame = con.execute(sql, params).df()
    frame = frame.drop(columns=["_none"], errors="ignore")
    frame["as_of_date"] = pd.to_datetime(frame["as_of_date"])
    frame["date_30th_nonillness_absence"] = pd.to_datetime(frame["date_30th_nonillness_absence"])
    frame["label"] = frame["label"].astype("float")  # NaN where the survey does not exist yet
    return frame


def feature_matrix(frame: pd.DataFrame, features: Sequence[str]) -> np.ndarray:
    """float32 matrix of ``features``; a column the frame lacks is all NaN."""
    out = np.full((len(frame), len(features)), np.nan, dtype=np.float32)
    for j, c in enumerate(features):
        if c in frame.columns:
            out[:, j] = pd.to_numeric(frame[c], errors="coerce").to_numpy(dtype=np.float32, na_value=np.nan)
    return out


def fingerprint(frame: pd.DataFrame, features: Sequence[str]) -> dict:
    """What a model was trained on: as-of dates, row counts, positives, and a content hash."""
    import hashlib

    h = hashlib.sha256()
    keys = frame[["pupil_id", "as_of_date"]]
    h.update(pd.util.hash_pandas_object(keys, index=False).to_numpy().tobytes())
    h.update(pd.util.hash_pandas_object(frame["label"].fillna(-1), index=False).to_numpy().tobytes())
    h.update(feature_matrix(frame, features).tobytes())
    h.update("\n".join(features).encode())
    dates = sorted(pd.to_datetime(frame["as_of_date"]).dt.date.astype(str).unique())
    return {
        "rows": int(len(frame)),
        "pupils": int(frame["pupil_id"].nunique()),
        "positives": int((frame["label"] == 1).sum()),
        "school_years": sorted(int(y) for y in frame["school_year"].unique()),
        "as_of_dates": dates,
        "features": len(features),
        "sha256": h.hexdigest(),
    }
