"""The 貧困・虐待 screen (``outputs.hardship_screen``): transparent weighted indicators.

No labels exist for poverty or abuse, so nothing is learned: the indicators, their weights and
the reason for each live in a file people read and edit (:data:`DEFAULT_SPEC`,
``ml/hardship_indicators.toml``). A pupil's ``screen_score`` is the sum of the weights of the
indicators that fired; the fired indicators are listed in words. The result is a list for a
person to assess, never a decision.

**Point in time.** Each indicator reads a column of ``marts.pupil_features``, whose every value
uses only records known before its as-of date (``known_date < as_of_date``, ml/asof.py). The
screen of an as-of date therefore sees exactly what the city knew that day, and changing any
record known later changes nothing (tests/test_outputs.py checks it on the tiny city). A
missing value never fires: no checkup on file is not a missed checkup.
"""

from __future__ import annotations

import json
import operator
import tomllib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

DEFAULT_SPEC = Path(__file__).with_name("hardship_indicators.toml")
OPS = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt, "==": operator.eq}
TABLE = "outputs.hardship_screen"

HARDSHIP_SCREEN_DDL = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    pupil_id VARCHAR, school_code VARCHAR, grade INTEGER, as_of_date DATE,
    screen_score DOUBLE, n_indicators INTEGER, rank_in_school INTEGER,
    indicators_ja VARCHAR, indicators_json VARCHAR, spec_version VARCHAR, screened_at TIMESTAMP
)"""


@dataclass(frozen=True)
class Indicator:
    key: str
    label: str
    feature: str
    op: str
    value: float | bool
    weight: float
    why: str


@dataclass(frozen=True)
class Spec:
    title: str
    version: str
    indicators: tuple[Indicator, ...]

    @property
    def features(self) -> list[str]:
        return sorted({i.feature for i in self.indicators})


def load_spec(path: Path | str = DEFAULT_SPEC) -> Spec:
    """Read and validate the indicator file: every field present, a known operator, a positive
    weight and a reason; keys unique. A mistake is named, with the indicator's key."""
    raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    items = raw.get("indicator", [])
    if not items:
        raise ValueError(f"{path}: no [[indicator]] entries")
    out, seen = [], set()
    for n, item in enumerate(items, 1):
        missing = [f for f in ("key", "label", "feature", "op", "value", "weight", "why") if f not in item]
        name = item.get("key", f"#{n}")
        if missing:
            raise ValueError(f"{path}: indicator {name} lacks {', '.join(missing)}")
        if item["op"] not in OPS:
            raise ValueError(f"{path}: indicator {name}: operator {item['op']!r} is not one of {list(OPS)}")
        if not float(item["weight"]) > 0:
            raise ValueError(f"{path}: indicator {name}: weight must be positive")
        if not str(item["why"]).strip():
            raise ValueError(f"{path}: indicator {name}: say why it matters")
        if name in seen:
            raise ValueError(f"{path}: indicator key {name} appears twice")
        seen.add(name)
        out.append(Indicator(item["key"], item["label"], item["feature"], item["op"], item["value"],
                             float(item["weight"]), item["why"]))
    return Spec(raw.get("title", ""), str(raw.get("version", "")), tuple(out))


def fired(frame: pd.DataFrame, spec: Spec) -> pd.DataFrame:
    """A boolean column per indicator (False where the feature is missing)."""
    absent = [i.feature for i in spec.indicators if i.feature not in frame.columns]
    if absent:
        raise KeyError(f"the pupil table has no column(s) {sorted(set(absent))} named in the screen")
    cols = {}
    for i in spec.indicators:
        x = frame[i.feature]
        known = x.notna().to_numpy()
        values = x.to_numpy(dtype=float, na_value=np.nan) if not isinstance(i.value, bool) else \
            x.astype("boolean").fillna(False).to_numpy(dtype=bool)
        with np.errstate(invalid="ignore"):
            hit = OPS[i.op](values, i.value)
        cols[i.key] = np.asarray(hit, dtype=bool) & known
    return pd.DataFrame(cols, index=frame.index)


def screen(frame: pd.DataFrame, spec: Spec) -> pd.DataFrame:
    """``frame``: rows of marts.pupil_features (pupil_id, school_code, grade, as_of_date and the
    spec's features). Returns one row per pupil with score, rank in school and words."""
    hits = fired(frame, spec)
    weights = np.array([i.weight for i in spec.indicators])
    labels = [i.label for i in spec.indicators]
    keys = [i.key for i in spec.indicators]
    m = hits[keys].to_numpy()
    out = frame[["pupil_id", "school_code", "grade", "as_of_date"]].copy()
    out["screen_score"] = m @ weights
    out["n_indicators"] = m.sum(axis=1).astype(int)
    order = np.argsort(-weights, kind="stable")  # strongest signs first in the words
    out["indicators_ja"] = ["、".join(labels[j] for j in order if row[j]) for row in m]
    out["indicators_json"] = [json.dumps([keys[j] for j in order if row[j]], ensure_ascii=False)
                              for row in m]
    # ties share a rank (method "min"): equal scores are equal evidence
    out["rank_in_school"] = (out.groupby(["as_of_date", "school_code"])["screen_score"]
                             .rank(method="min", ascending=False).astype(int))
    out["spec_version"] = spec.version
    return out.reset_index(drop=True)


def load_features(con, spec: Spec, *, as_of_dates=None, kinds=None) -> pd.DataFrame:
    """The spec's columns of marts.pupil_features for the given as-of dates or kinds."""
    cols = ", ".join(["pupil_id", "school_code", "grade", "as_of_date", *[f'"{c}"' for c in spec.features]])
    where, params = [], []
    if as_of_dates is not None:
        where.append("as_of_date IN (SELECT unnest(?))")
        params.append(list(as_of_dates))
    if kinds is not None:
        where.append("as_of_kind IN (SELECT unnest(?))")
        params.append(list(kinds))
    sql = f"SELECT {cols} FROM marts.pupil_features" + (" WHERE " + " AND ".join(where) if where else "")
    return con.execute(sql, params).df()


def screen_page(con, school_code: str, *, as_of_date=None, top: int | None = None) -> dict:
    """What a page of the screen needs for one school (entitled roles only): the as-of date, the
    pupils with at least one indicator, strongest first, and the indicators with their reasons.

    ``con``: a DuckDB connection to any database holding ``outputs.hardship_screen`` (the
    warehouse or a serving snapshot). Names are not here: the portal joins them from identity/.
    """
    if as_of_date is None:
        as_of_date = con.execute(f"SELECT max(as_of_date) FROM {TABLE}").fetchone()[0]
    rows = con.execute(
        f"SELECT pupil_id, grade, screen_score, n_indicators, rank_in_school, indicators_ja "
        f"FROM {TABLE} WHERE school_code = ? AND as_of_date = ? AND n_indicators > 0 "
        f"ORDER BY screen_score DESC, pupil_id" + (f" LIMIT {int(top)}" if top else ""),
        [school_code, as_of_date]).df()
    spec = load_spec()
    return {"school_code": school_code, "as_of_date": as_of_date, "pupils": rows,
            "indicators": [{"label": i.label, "weight": i.weight, "why": i.why} for i in spec.indicators],
            "note_ja": "このリストは人が確認するためのもので、自動的な判断ではありません。"}
