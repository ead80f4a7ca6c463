"""Expectations that only someone who knows the data would write, kept beside the catalogue.

The catalogue (``toda_platform/catalogue.py``) says what each column *is*; ``quality.suites``
turns that into the generic expectations (columns present, not blank, allowed codes, ranges,
unique key). This module adds what the city's data people know, as data where possible:

* generic rules that follow from the *shape* of a spec — every date column, every ``pupil_id``,
  ``resident_id`` and ``school_code``, every source with a ``school_year``, every monthly or
  per-round file — so a new source in the catalogue gets them without code;
* source-specific rules, listed in :data:`SOURCE_RULES` by source key, whose domain facts
  (Q-U thresholds, 標準体重 coefficients) come from ``spec.constants``.

A *row rule* computes, for one file's typed frame, the offending rows and a short staged value
to show for each (never a name: pupil and resident ids are already pseudonyms). The suite
checks the rule with GX through a derived column that holds that sample for offending rows and
is null elsewhere (``expect_column_values_to_be_null``), so GX counts the rows, reports their
``_line`` and Data Docs show the samples.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import partial
from statistics import median
from typing import Callable, Mapping

import numpy as np
import pandas as pd

from quality.model import ERROR, WARN, Failure, FileContext, count, where
from toda_platform.catalogue import Column, SourceSpec

DATE_KINDS = ("date", "timestamp_date", "month")

# Plausible dates. The catalogue admits school years from 2000 (年度 min), so an event dated
# before April 2000 is a typo or a wrong era letter (H6 written for R6 reads as 1994). Births
# and pre-school events go back to the oldest pupil of 年度 2000, a 中3 born in 1985.
EVENT_DATES = (dt.date(2000, 4, 1), dt.date(2099, 12, 31))
EARLY_CHILDHOOD_DATES = (dt.date(1985, 4, 1), dt.date(2099, 12, 31))
EARLY_CHILDHOOD_SOURCES = frozenset({"infant_checkup", "nursery_enrollment"})

# Ranges implied by a column's kind when the catalogue gives no min/max.
KIND_RANGES: Mapping[str, tuple[float, float]] = {"grade": (1, 9)}  # 小1..中3 as city-wide 1..9

# 肥満度 from 標準体重: the staged table has no age, so the grade stands in for it. Checkups run
# April-June, when a pupil of city-wide grade g is g+5 (birthday still to come) or g+6.
OBESITY_AGE_FROM_GRADE = (5, 6)
OBESITY_TOLERANCE = 3.0  # points of 肥満度 (rounding in the school's system, height to 0.1 cm)


@dataclass(frozen=True)
class VolumeBand:
    """Row volume of a monthly or per-round file against the files before it."""

    cadences: tuple[str, ...] = ("monthly", "round")
    window: int = 6  # the last files compared with
    factor: float = 3.0  # allowed: median / factor .. median × factor
    min_previous: int = 2  # fewer earlier files: no band yet

    def applies(self, spec: SourceSpec) -> bool:
        return spec.export.file_cadence in self.cadences

    def bounds(self, previous: list[int]) -> tuple[float, float, float, int] | None:
        """(low, high, median, files compared) or None when there is no history yet."""
        recent = [int(v) for v in previous[-self.window:] if v is not None]
        if len(recent) < self.min_previous:
            return None
        mid = float(median(recent))
        return mid / self.factor, mid * self.factor, mid, len(recent)


VOLUME_BAND = VolumeBand()


# ---------------------------------------------------------------------------------------------
# Columns
# ---------------------------------------------------------------------------------------------

def staged_column(spec: SourceSpec, staged_name: str) -> Column:
    for col in spec.staged_columns:
        if col.staged_name == staged_name:
            return col
    raise KeyError(f"{spec.key} has no staged column {staged_name!r}")


def header(spec: SourceSpec, ctx: FileContext | None, staged_name: str) -> str | None:
    """The header of a staged column as it appeared in the file (else the catalogue's)."""
    try:
        col = staged_column(spec, staged_name)
    except KeyError:
        return None
    if ctx is not None and ctx.headers:
        return ctx.headers.get(col.name) or ctx.headers.get(staged_name) or col.header
    return col.header


def date_columns(spec: SourceSpec) -> list[Column]:
    return [c for c in spec.staged_columns if c.kind in DATE_KINDS]


def event_date_columns(spec: SourceSpec) -> list[Column]:
    """Dates of things that happened (not birth months)."""
    return [c for c in date_columns(spec) if c.pii != "birth_month" and not c.planned]


def date_bounds(spec: SourceSpec, col: Column) -> tuple[dt.date, dt.date]:
    if col.pii == "birth_month" or spec.key in EARLY_CHILDHOOD_SOURCES:
        return EARLY_CHILDHOOD_DATES
    return EVENT_DATES


def value_range(col: Column) -> tuple[float | None, float | None] | None:
    if col.min is not None or col.max is not None:
        return col.min, col.max
    return KIND_RANGES.get(col.kind)


def school_year_column(spec: SourceSpec) -> str | None:
    """Where a row's school year comes from: the 年度 column, else its first event date."""
    names = {c.staged_name for c in spec.staged_columns}
    if "school_year" in names:
        return "school_year"
    dates = [c for c in event_date_columns(spec) if c.kind != "month"] or event_date_columns(spec)
    return dates[0].staged_name if dates else None


def row_school_years(spec: SourceSpec, df: pd.DataFrame) -> pd.Series | None:
    name = school_year_column(spec)
    if name is None or name not in df:
        return None
    if name == "school_year":
        return df[name].astype("Int64")
    return school_years_of(df[name])


def _school_year_of_day(value: np.datetime64) -> int:
    d = pd.Timestamp(value)
    return d.year - 1 if d.month < 4 else d.year


def school_years_of(dates: pd.Series) -> pd.Series:
    """The school year (April–March) of each date, as nullable integers.

    A file nearly always lies inside one school year: then it is the school year of its first
    and last date, without a per-row calendar conversion.
    """
    v = dates.to_numpy(dtype="datetime64[ns]")
    nat = np.isnat(v)
    if nat.all():
        return pd.Series(pd.arrays.IntegerArray(np.zeros(len(v), "int64"), nat), index=dates.index)
    present = v[~nat] if nat.any() else v
    first, last = _school_year_of_day(present.min()), _school_year_of_day(present.max())
    if first == last:
        sy = np.full(len(v), first, dtype="int64")
    else:
        months = v.astype("datetime64[M]").astype("int64")
        year = months // 12 + 1970
        sy = np.where(months % 12 < 3, year - 1, year)
        sy = np.where(nat, 0, sy).astype("int64")
    return pd.Series(pd.arrays.IntegerArray(sy, nat.copy()), index=dates.index)


def weekdays_of(dates: pd.Series) -> np.ndarray:
    """Monday = 0 … Sunday = 6; -1 for a missing date (integer arithmetic on day numbers)."""
    v = dates.to_numpy(dtype="datetime64[ns]")
    days = v.astype("datetime64[D]").view("int64")  # 1970-01-01 was a Thursday
    return np.where(np.isnat(v), -1, (days + 3) % 7)


def unknown_mask(values: pd.Series, known, within: np.ndarray | None = None) -> np.ndarray:
    """Rows (inside ``within``) whose value is not in ``known``; each distinct value looked up once."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        codes = values.cat.codes.to_numpy()
        sel = codes if within is None else codes[within]
        cats = values.cat.categories.to_numpy()
        present = np.flatnonzero(np.bincount(sel[sel >= 0], minlength=len(cats)))
        bad = np.array([k for k, v in zip(present, cats[present]) if v not in known], dtype=codes.dtype)
        mask = np.isin(codes, bad) if len(bad) else np.zeros(len(values), dtype=bool)
    else:
        sel = values if within is None else values[within]
        unknown = [v for v in pd.unique(sel.dropna()) if v not in known]
        mask = values.isin(unknown).to_numpy(dtype=bool) if unknown else np.zeros(len(values), dtype=bool)
    return mask if within is None else (mask & within)


def _mask(series: pd.Series) -> np.ndarray:
    """A boolean condition as a plain numpy mask (NA counts as False)."""
    if series.dtype == bool:
        return series.to_numpy()
    return series.fillna(False).to_numpy(dtype=bool)


def _iso(d: pd.Series) -> pd.Series:
    return d.dt.strftime("%Y-%m-%d")


# ---------------------------------------------------------------------------------------------
# Row rules
# ---------------------------------------------------------------------------------------------

Evaluate = Callable[[pd.DataFrame, FileContext], "pd.Series | None"]
Problem = Callable[[pd.DataFrame, FileContext], str]


@dataclass(frozen=True)
class RowRule:
    check: str  # Failure.check
    column: str  # the staged column the failure is reported on
    severity: str
    expects: str  # what must hold, in words (Data Docs and the reasons file)
    evaluate: Evaluate  # offending rows only: index -> sample value; None: cannot run
    problem: Problem  # (offending rows, ctx) -> "3 rows for 2 pupils not in …"
    inputs: tuple[str, ...] = ()  # other staged columns the rule reads
    needs: str | None = None  # the FileContext field it needs ("known_pupils", …)
    # the inputs matter only through their school year: a batch checks each value once per year
    by_school_year: bool = False

    @property
    def gx_column(self) -> str:
        return f"chk__{self.check}__{self.column}"

    @property
    def columns(self) -> tuple[str, ...]:
        return (self.column, *self.inputs)


def known_pupil(spec: SourceSpec) -> RowRule:
    year_from = school_year_column(spec)

    def evaluate(df, ctx):
        if ctx.known_pupils is None:
            return None
        years = row_school_years(spec, df)
        pid = df["pupil_id"]
        bad = np.zeros(len(df), dtype=bool)
        if years is None:
            return pid[bad]
        values = years.to_numpy(dtype="int64", na_value=-1)
        lo, hi = values.min(initial=10**9), values.max(initial=-1)
        distinct = [lo] if lo == hi else sorted(set(np.unique(values).tolist()) - {-1})
        for year in distinct:
            known = ctx.known_pupils.get(int(year))
            if known is None or year < 0:
                continue  # no registry for that year: reported by context_failures
            within = None if lo == hi else (values == year)
            bad |= unknown_mask(pid, known, within)
        return pid[bad].astype(object)

    def problem(rows, ctx):
        years = row_school_years(spec, rows)
        ys = sorted({int(y) for y in years.dropna()}) if years is not None else []
        year_text = f" of school year {', '.join(map(str, ys))}" if ys else ""
        return (f"{count(len(rows), 'row')} for {count(rows['pupil_id'].nunique(), 'pupil')} not in the "
                f"学齢簿 (pupil_registry){year_text}: a wrong 学籍番号 or a pupil missing from the roll")

    return RowRule("known_pupil", "pupil_id", ERROR,
                   f"every pupil_id is in the 学齢簿 (pupil_registry) of the row's school year (from {year_from})",
                   evaluate, problem, inputs=(year_from,) if year_from else (), needs="known_pupils",
                   by_school_year=True)


def known_resident(spec: SourceSpec) -> RowRule:
    def evaluate(df, ctx):
        if ctx.known_residents is None:
            return None
        rid = df["resident_id"]
        return rid[unknown_mask(rid, ctx.known_residents)].astype(object)

    def problem(rows, ctx):
        return (f"{count(len(rows), 'row')} for {count(rows['resident_id'].nunique(), 'child', 'children')} "
                f"whose 宛名番号 is in no 学齢簿 (pupil_registry); expected for children who moved away "
                f"before school age, so this is recorded, not blocking")

    return RowRule("known_resident", "resident_id", WARN,
                   "resident_id is in the 学齢簿 (children who moved away before school age are legitimately unknown)",
                   evaluate, problem, needs="known_residents")


def known_school(spec: SourceSpec) -> RowRule:
    def evaluate(df, ctx):
        if ctx.known_schools is None:
            return None
        codes = df["school_code"]
        return codes[unknown_mask(codes, ctx.known_schools)].astype(object)

    def problem(rows, ctx):
        return (f"{count(len(rows), 'row')} with {count(rows['school_code'].nunique(), 'school code')} "
                f"not in the school master (学校一覧)")

    return RowRule("known_school", "school_code", ERROR, "school_code is in the school master (学校一覧)",
                   evaluate, problem, needs="known_schools")


def date_in_school_year(spec: SourceSpec, column: str) -> RowRule:
    def evaluate(df, ctx):
        d, sy = df[column], df["school_year"].astype("Int64")
        bad = _mask(school_years_of(d) != sy)
        return _iso(d[bad])

    def problem(rows, ctx):
        years = sorted({int(y) for y in rows["school_year"].dropna()})
        spans = "; ".join(f"{y}: {y}-04-01 – {y + 1}-03-31" for y in years[:3])
        return (f"{count(len(rows), 'date')} outside the row's school year (年度 {spans}); "
                f"check the 年度 or the era of the date")

    return RowRule("date_in_school_year", column, ERROR,
                   f"{column} lies inside the row's school year (April 1 – March 31 of 年度)",
                   evaluate, problem, inputs=("school_year",))


def no_weekend(spec: SourceSpec, column: str) -> RowRule:
    def evaluate(df, ctx):
        d = df[column]
        bad = weekdays_of(d) >= 5
        return (_iso(d[bad]) + " (" + d[bad].dt.strftime("%a") + ")")

    def problem(rows, ctx):
        return (f"{count(len(rows), 'row')} dated on a Saturday or Sunday; a 土曜授業 is possible, "
                f"a shifted date column more likely")

    return RowRule("no_weekend", column, WARN, f"{column} is a weekday (schools are closed on weekends)",
                   evaluate, problem)


def qu_group_consistent(spec: SourceSpec) -> RowRule:
    c = spec.constants
    a_high, i_high = c["approval_high_from"], c["infringement_high_from"]
    ns = c["needs_support"]
    a_rng, i_rng = value_range(spec.column("approval")), value_range(spec.column("infringement"))

    def expected(df):
        a = df["approval"].astype("float64").to_numpy()
        i = df["infringement"].astype("float64").to_numpy()
        ah, ih = a >= a_high, i >= i_high
        exp = np.select([ah & ~ih, ~ah & ~ih, ah & ih], ["satisfied", "unrecognised", "infringed"],
                        "dissatisfied").astype(object)
        needs = (a <= ns["approval_at_most"]) & (i >= ns["infringement_at_least"])
        valid = (np.isfinite(a) & np.isfinite(i) & (a >= a_rng[0]) & (a <= a_rng[1])
                 & (i >= i_rng[0]) & (i <= i_rng[1]))
        return a, i, exp, needs, valid

    def evaluate(df, ctx):
        a, i, exp, needs, valid = expected(df)
        g = df["group"].astype(object).to_numpy()
        present = pd.notna(g)
        ok = (g == exp) | ((g == "needs_support") & needs & (exp == "dissatisfied"))
        bad = valid & present & ~ok
        idx = np.flatnonzero(bad)
        samples = [f"approval {int(a[k])}, infringement {int(i[k])}, group '{g[k]}' (expected "
                   f"'{exp[k]}'{' or needs_support' if needs[k] else ''})" for k in idx]
        return pd.Series(samples, index=df.index[idx], dtype=object)

    def problem(rows, ctx):
        return (f"{count(len(rows), 'group')} inconsistent with the scores "
                f"(承認得点 ≥ {a_high} is high approval, 被侵害得点 ≥ {i_high} is high infringement; "
                f"satisfied = high/low, unrecognised = low/low, infringed = high/high, "
                f"dissatisfied = low/high, needs_support allowed when 承認得点 ≤ {ns['approval_at_most']} "
                f"and 被侵害得点 ≥ {ns['infringement_at_least']})")

    return RowRule("qu_group_consistent", "group", ERROR,
                   f"group follows from approval (high from {a_high}) and infringement (high from {i_high}); "
                   f"needs_support only when approval ≤ {ns['approval_at_most']} and infringement ≥ "
                   f"{ns['infringement_at_least']}",
                   evaluate, problem, inputs=("approval", "infringement"))


def obesity_consistent(spec: SourceSpec) -> RowRule:
    table = spec.constants["standard_weight"]
    ranges = {n: value_range(spec.column(n)) for n in ("height_cm", "weight_kg", "obesity_index")}

    def coefficients(sex: np.ndarray, age: np.ndarray):
        a = np.full(len(sex), np.nan)
        b = np.full(len(sex), np.nan)
        for s, by_age in table.items():
            for years, (ca, cb) in by_age.items():
                m = (sex == s) & (age == years)
                a[m], b[m] = ca, cb
        return a, b

    def evaluate(df, ctx):
        h = df["height_cm"].astype("float64").to_numpy()
        w = df["weight_kg"].astype("float64").to_numpy()
        ob = df["obesity_index"].astype("float64").to_numpy()
        grade = df["grade"].astype("float64").to_numpy()
        sex = df["sex"].astype(object).to_numpy()
        valid = np.isfinite(h) & np.isfinite(w) & np.isfinite(ob) & np.isfinite(grade) & pd.notna(sex)
        for name, values in (("height_cm", h), ("weight_kg", w), ("obesity_index", ob)):
            lo, hi = ranges[name]
            valid &= (values >= lo) & (values <= hi)  # out-of-range values are the range check's
        calcs = []
        with np.errstate(invalid="ignore", divide="ignore"):
            for offset in OBESITY_AGE_FROM_GRADE:
                a, b = coefficients(sex, grade + offset)
                std = a * h - b
                calcs.append(np.where(std > 0, (w - std) / std * 100, np.nan))
            calc = np.vstack(calcs)
            diff = np.min(np.where(np.isfinite(calc), np.abs(calc - ob), np.inf), axis=0)
        bad = valid & ~(diff <= OBESITY_TOLERANCE)
        idx = np.flatnonzero(bad)
        samples = []
        for k in idx:
            got = [v for v in calc[:, k] if np.isfinite(v)]
            exp = (f"expected {min(got):.1f} to {max(got):.1f}" if got
                   else "no 標準体重 for this sex and grade")
            samples.append(f"height_cm {h[k]:g}, weight_kg {w[k]:g}, sex {sex[k]}, grade {int(grade[k])}: "
                           f"obesity_index {ob[k]:g}, {exp}")
        return pd.Series(samples, index=df.index[idx], dtype=object)

    def problem(rows, ctx):
        offsets = " or ".join(f"学年 + {o}" for o in OBESITY_AGE_FROM_GRADE)
        return (f"{count(len(rows), 'value')} of 肥満度 more than {OBESITY_TOLERANCE:g} points away from "
                f"(体重 − 標準体重) / 標準体重 × 100 with 標準体重 = a × 身長 − b for the pupil's sex "
                f"and age ({offsets})")

    return RowRule("obesity_consistent", "obesity_index", ERROR,
                   f"obesity_index = (weight − standard weight) / standard weight × 100 within "
                   f"±{OBESITY_TOLERANCE:g}, standard weight = a × height − b by sex and age "
                   f"(grade + {' or + '.join(map(str, OBESITY_AGE_FROM_GRADE))})",
                   evaluate, problem, inputs=("height_cm", "weight_kg", "sex", "grade"))


# Source-specific rules by source key: each entry builds a RowRule from the spec.
SOURCE_RULES: Mapping[str, tuple[Callable[[SourceSpec], RowRule], ...]] = {
    "attendance_daily": (partial(no_weekend, column="date"),),
    "qu_survey": (qu_group_consistent,),
    "health_checkup": (obesity_consistent,),
}

# Sources that are the reference others are checked against.
REGISTRY_KEY = "pupil_registry"
SCHOOL_MASTER_KEY = "school_master"


def row_rules(spec: SourceSpec) -> list[RowRule]:
    names = {c.staged_name for c in spec.staged_columns}
    rules: list[RowRule] = []
    if spec.grain == "pupil" and "pupil_id" in names and spec.key != REGISTRY_KEY:
        rules.append(known_pupil(spec))
    if "resident_id" in names and "pupil_id" not in names:
        rules.append(known_resident(spec))
    if "school_code" in names and spec.key != SCHOOL_MASTER_KEY:
        rules.append(known_school(spec))
    if spec.grain == "pupil" and "school_year" in names:
        rules += [date_in_school_year(spec, c.staged_name) for c in event_date_columns(spec)]
    rules += [build(spec) for build in SOURCE_RULES.get(spec.key, ())]
    return rules


def context_failures(spec: SourceSpec, df: pd.DataFrame, ctx: FileContext) -> list[Failure]:
    """What the file's context makes impossible to check, said out loud (warnings)."""
    out: list[Failure] = []
    names = {c.staged_name for c in spec.staged_columns}
    if (ctx.known_pupils is not None and spec.grain == "pupil" and "pupil_id" in names
            and spec.key != REGISTRY_KEY):
        years = row_school_years(spec, df)
        if years is not None:
            for year in sorted(int(y) for y in years.dropna().unique() if int(y) not in ctx.known_pupils):
                rows = df[_mask(years == year)]
                lines = sorted(int(n) for n in rows["_line"].head(10))
                h = header(spec, ctx, "pupil_id")
                out.append(Failure(
                    check="known_pupil", expectation="custom", severity=WARN, column="pupil_id",
                    unexpected_count=len(rows), lines=lines, sample_values=[],
                    message=(f"{where(ctx.file_name, lines, ['pupil_id'], [h], len(rows))}: no 学齢簿 "
                             f"(pupil_registry) of school year {year} is loaded, so {count(len(rows), 'row')} "
                             f"could not be checked against it; land that year's registry first"),
                ))
    return out


__all__ = [
    "DATE_KINDS", "EVENT_DATES", "EARLY_CHILDHOOD_DATES", "KIND_RANGES", "OBESITY_AGE_FROM_GRADE",
    "OBESITY_TOLERANCE", "VOLUME_BAND", "VolumeBand", "RowRule", "SOURCE_RULES", "row_rules",
    "context_failures", "date_columns", "event_date_columns", "date_bounds", "value_range",
    "header", "staged_column", "row_school_years",
]
