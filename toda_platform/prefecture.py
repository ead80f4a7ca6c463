"""Cross-city views for the prefecture: school and city aggregates only, small cells suppressed.

Each city contributes, from its own warehouse (read-only, in its own boundary):

* its **published schools' rows** of ``marts.school_aggregates`` — already suppressed there
  (a cell from fewer than 10 pupils is NULL with ``<cell>_suppressed``); a school not enabled
  for publication in the city file (``[publication] pilot_schools``) is left out;
* its **city totals** per school year and school type, summed from the unsuppressed school
  figures inside the city, then suppressed by the same rule. Where the total minus the shown
  school cells would be 1–9 (a hidden school's cell would follow by subtraction), more school
  cells are hidden, smallest first, or the total when that is not enough.

The prefecture row of a year and type adds the cities' published totals; it is shown only when
no city's total is hidden (a partial sum would mislead, and the hidden city's figure would
follow by subtraction). Nothing about a single pupil leaves a city.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import pandas as pd

from ml.aggregates import MIN_CELL, TABLE as SCHOOL_TABLE, raw_aggregates

COUNTS = ("long_absent_count", "futoukou_count")  # pupil counts: shown when 0 or >= MIN_CELL
SCHOOL_COLUMNS = ["school_code", "school_name", "school_type", "school_year", "year_complete",
                  "enrolment", "attendance_rate", "long_absent_count", "long_absent_rate",
                  "futoukou_count", "futoukou_rate"]
CITY_KEYS = ["school_year", "school_type"]


def published_schools(city_file: Path) -> set[str] | None:
    """The schools a city enables for publication; None: every school (no list)."""
    if not city_file.is_file():
        return None
    pilot = tomllib.loads(city_file.read_text(encoding="utf-8")).get("publication", {}).get("pilot_schools")
    return set(pilot) if pilot else None


def _flags(frame: pd.DataFrame, cells) -> pd.DataFrame:
    return frame.assign(**{f"{c}_suppressed": frame[f"{c}_suppressed"].fillna(False).astype(bool)
                           for c in cells if f"{c}_suppressed" in frame})


def school_rows(schools: pd.DataFrame, published: set[str] | None) -> pd.DataFrame:
    """A city's published schools' rows, with the suppression flags of their cells."""
    cells = SCHOOL_COLUMNS[5:]
    keep = SCHOOL_COLUMNS + [f"{c}_suppressed" for c in cells]
    rows = schools if published is None else schools[schools.school_code.isin(published)]
    return _flags(rows.reindex(columns=keep), cells).reset_index(drop=True)


# (city total's column in the raw figures, the school rows' cell, the school rows' rate)
TOTALS = (("enrolment", "enrolment", None), ("long_absent", "long_absent_count", "long_absent_rate"),
          ("futoukou", "futoukou_count", "futoukou_rate"))


def _hide(schools: pd.DataFrame, index, cell: str, rate: str | None) -> None:
    schools.loc[index, cell] = None
    schools.loc[index, f"{cell}_suppressed"] = True
    if rate:
        schools.loc[index, rate] = None
        schools.loc[index, f"{rate}_suppressed"] = True


def _complement(schools: pd.DataFrame, rows, total: float, cell: str, rate: str | None) -> bool:
    """Hide more school cells of ``rows`` (smallest positive first) until the total minus the
    shown cells is 0 or at least MIN_CELL; False when that cannot be reached (the total must go)."""
    while True:
        shown = schools.loc[rows, cell].dropna()
        hidden = total - shown.sum()
        if not 1 <= hidden < MIN_CELL:
            return True
        positive = shown[shown > 0]
        if positive.empty:
            return False
        _hide(schools, positive.idxmin(), cell, rate)


def city_totals(raw: pd.DataFrame, schools: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per school year and type: the city's totals from its raw school figures (``raw``:
    school_year, school_type, enrolment, long_absent, futoukou, attended_days, required_days,
    att_pupils), suppressed — with the published school rows (``schools``), further suppressed
    where the total would reveal a hidden school's cell by subtraction (complementary
    suppression: the smallest shown cells go first; the total goes when that is not enough)."""
    schools = schools.copy()
    for cell in ("enrolment", "long_absent_count", "futoukou_count", "long_absent_rate", "futoukou_rate"):
        schools[cell] = schools[cell].astype("float64")
    totals = raw.groupby(CITY_KEYS, as_index=False).agg(
        n_schools=("school_year", "size"), enrolment=("enrolment", "sum"),
        long_absent=("long_absent", lambda s: s.sum(min_count=1)),
        futoukou=("futoukou", lambda s: s.sum(min_count=1)),
        attended_days=("attended_days", "sum"), required_days=("required_days", "sum"),
        att_pupils=("att_pupils", "sum"))
    out = []
    for r in totals.itertuples(index=False):
        rows = schools.index[(schools.school_year == r.school_year) & (schools.school_type == r.school_type)]
        row = {"school_year": int(r.school_year), "school_type": r.school_type, "n_schools": int(r.n_schools)}
        enrolment = r.enrolment
        for total_col, cell, rate in TOTALS:
            k = getattr(r, total_col)
            if pd.isna(k):  # e.g. no long-absence survey for the year yet
                row[cell], row[f"{cell}_suppressed"] = None, False
                if rate:
                    row[rate] = None
                continue
            ok = enrolment >= MIN_CELL and (cell == "enrolment" or k == 0 or k >= MIN_CELL)
            ok = ok and _complement(schools, rows, k, cell, rate)
            row[cell] = int(k) if ok else None
            row[f"{cell}_suppressed"] = not ok
            if rate:
                row[rate] = 100.0 * k / enrolment if ok else None
        ok_att = r.att_pupils >= MIN_CELL and r.required_days > 0
        row["attendance_rate"] = r.attended_days / r.required_days if ok_att else None
        row["attendance_rate_suppressed"] = bool(not ok_att and r.required_days > 0)
        out.append(row)
    return schools, pd.DataFrame(out)


def prefecture_totals(cities: pd.DataFrame) -> pd.DataFrame:
    """Per school year and type over every city: a cell is the sum of the cities' published
    cells, NULL (suppressed) when any city's is hidden."""
    rows = []
    for (year, kind), g in cities.groupby(CITY_KEYS):
        row = {"school_year": int(year), "school_type": kind, "n_cities": g.city.nunique(),
               "n_schools": int(g.n_schools.sum())}
        for cell in ("enrolment", "long_absent_count", "futoukou_count"):
            hidden = g[f"{cell}_suppressed"].any()
            row[cell] = None if hidden else int(g[cell].sum())
            row[f"{cell}_suppressed"] = bool(hidden)
        for cell in ("long_absent", "futoukou"):
            n, k = row["enrolment"], row[f"{cell}_count"]
            row[f"{cell}_rate"] = 100.0 * k / n if n and k is not None else None
        rows.append(row)
    return pd.DataFrame(rows)


def city_contribution(con, published: set[str] | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(published school rows, suppressed city totals) of one city's warehouse."""
    schools = school_rows(con.execute(f"SELECT * FROM {SCHOOL_TABLE}").df(), published)
    raw_aggregates(con, into="_prefecture_raw")
    try:
        raw = con.execute("SELECT school_year, school_type, enrolment, long_absent, futoukou, "
                          "attended_days, required_days, att_pupils FROM _prefecture_raw "
                          "WHERE enrolment IS NOT NULL").df()
    finally:
        con.execute("DROP TABLE IF EXISTS _prefecture_raw")
    return city_totals(raw, schools)


def build_prefecture(deployment, out: Path | None = None) -> dict[str, pd.DataFrame]:
    """Read every city of ``deployment`` (read-only) and write the prefecture's tables
    (schools.csv, cities.csv, prefecture.csv under ``$TODA_DEPLOYMENT/prefecture``)."""
    from toda_platform.deployment import CITY_FILE
    from toda_platform.warehouse import connect

    schools, cities = [], []
    for name in deployment.cities():
        paths = deployment.paths(name)
        if not paths.warehouse.exists():
            continue
        con = connect(paths.warehouse, read_only=True)
        try:
            s, c = city_contribution(con, published_schools(paths.home / CITY_FILE))
        finally:
            con.close()
        schools.append(s.assign(city=name))
        cities.append(c.assign(city=name))
    if not cities:
        raise LookupError(f"no city of {deployment.root} has a warehouse yet")
    tables = {"schools": pd.concat(schools, ignore_index=True), "cities": pd.concat(cities, ignore_index=True)}
    tables["prefecture"] = prefecture_totals(tables["cities"])
    out = out or deployment.prefecture
    out.mkdir(parents=True, exist_ok=True)
    for name, frame in tables.items():
        first = ["city"] if "city" in frame else []
        frame[first + [c for c in frame.columns if c != "city"]].to_csv(
            out / f"{name}.csv", index=False, encoding="utf-8-sig")
    return tables
