"""Checks of a published risk list (``outputs.risk_scores``, one as-of date), in SQL.

Each check returns a :class:`ListCheck` (passed, a sentence, figures); the Dagster asset checks
in ``assets/models.py`` only wrap them. Every check is about the newest list: the lists of
earlier days are the record of what was shown then and are not rewritten.

* scores are probabilities: finite, within 0–1;
* bands follow the scores in severity order (赤 > ピンク > 橙 > 黄 > none): every pupil of a band
  scores at least as high as every pupil of a less severe band, and no other band value occurs;
* one row per pupil;
* every cohort pupil of that as-of date (``marts.labels`` in_cohort with a features row) is
  scored, and nobody else (a known case is listed apart, never scored).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ml.scoring import BANDS

TABLE = "outputs.risk_scores"
SEVERITY = [b for b, _ in BANDS]  # most severe first


@dataclass(frozen=True)
class ListCheck:
    passed: bool
    description: str
    metadata: dict = field(default_factory=dict)


def latest_list_date(con):
    """The as-of date of the newest list, or None when nothing was published."""
    from ml.dataset import table_exists

    if not table_exists(con, TABLE):
        return None
    return con.execute(f"SELECT max(as_of_date) FROM {TABLE}").fetchone()[0]


def scores_are_probabilities(con, as_of_date) -> ListCheck:
    n, bad, lo, hi = con.execute(
        f"SELECT count(*), count(*) FILTER (score IS NULL OR isnan(score) OR score < 0 OR score > 1), "
        f"min(score), max(score) FROM {TABLE} WHERE as_of_date = ?", [as_of_date]).fetchone()
    return ListCheck(bad == 0, f"{bad} of {n:,} scores outside 0–1" if bad else
                     f"all {n:,} scores within 0–1",
                     {"rows": n, "outside_0_1": bad, "min_score": lo, "max_score": hi})


def bands_in_severity_order(con, as_of_date) -> ListCheck:
    """Band ranges by severity; a band whose lowest score is below a less severe band's
    highest score breaks the order."""
    rows = con.execute(
        f"SELECT coalesce(band, 'なし') AS band, count(*), min(score), max(score) FROM {TABLE} "
        f"WHERE as_of_date = ? GROUP BY 1", [as_of_date]).fetchall()
    found = {b: (n, lo, hi) for b, n, lo, hi in rows}
    order = SEVERITY + ["なし"]
    unknown = sorted(set(found) - set(order))
    present = [b for b in order if b in found]
    overlaps = [f"{a} (lowest {found[a][1]:.3f}) below {b} (highest {found[b][2]:.3f})"
                for i, a in enumerate(present) for b in present[i + 1:]
                if found[a][1] < found[b][2]]
    table = [{"band": b, "pupils": found[b][0], "lowest_score": round(found[b][1], 4),
              "highest_score": round(found[b][2], 4)} for b in present]
    problems = ([f"unknown band(s) {', '.join(unknown)}"] if unknown else []) + overlaps
    return ListCheck(not problems, "; ".join(problems) or
                     "bands follow the scores: " + " > ".join(present),
                     {"bands": table, "unknown_bands": unknown})


def one_row_per_pupil(con, as_of_date) -> ListCheck:
    n, dup = con.execute(f"SELECT count(*), count(*) - count(DISTINCT pupil_id) FROM {TABLE} "
                         f"WHERE as_of_date = ?", [as_of_date]).fetchone()
    return ListCheck(dup == 0, f"{dup} duplicate pupil rows" if dup else f"{n:,} pupils, one row each",
                     {"rows": n, "duplicate_rows": dup})


def every_cohort_pupil_scored(con, as_of_date) -> ListCheck:
    missing, extra, cohort = con.execute(f"""
        WITH cohort AS (
            SELECT l.pupil_id FROM marts.labels l
            JOIN marts.pupil_features f USING (pupil_id, as_of_date)
            WHERE l.in_cohort AND l.as_of_date = $d),
        listed AS (SELECT pupil_id FROM {TABLE} WHERE as_of_date = $d)
        SELECT (SELECT count(*) FROM cohort ANTI JOIN listed USING (pupil_id)),
               (SELECT count(*) FROM listed ANTI JOIN cohort USING (pupil_id)),
               (SELECT count(*) FROM cohort)""", {"d": as_of_date}).fetchone()
    ok = missing == 0 and extra == 0
    text = (f"all {cohort:,} cohort pupils scored" if ok else
            f"{missing:,} cohort pupils not scored, {extra:,} scored pupils outside the cohort")
    return ListCheck(ok, text, {"cohort": cohort, "not_scored": missing, "outside_cohort": extra})


CHECKS = {
    "scores_within_0_1": scores_are_probabilities,
    "bands_in_severity_order": bands_in_severity_order,
    "one_row_per_pupil": one_row_per_pupil,
    "every_cohort_pupil_scored": every_cohort_pupil_scored,
}


def run_check(con, name: str) -> ListCheck:
    """One check on the newest list; passes (saying so) when no list was published."""
    d = latest_list_date(con)
    if d is None:
        return ListCheck(True, "no risk list published yet: nothing to check", {"rows": 0})
    result = CHECKS[name](con, d)
    return ListCheck(result.passed, result.description, {"as_of_date": d, **result.metadata})
