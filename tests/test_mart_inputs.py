"""Rebuilding only the as-of dates whose inputs changed (ml/inputs.py), on the tiny city.

A rebuild that skips a date must leave exactly the rows a full rebuild would write: every test
compares the incrementally maintained marts with a build from scratch."""

from __future__ import annotations

from datetime import date


from ml import asof, features, inputs, labels
from tests.test_features import fresh  # noqa: F401  (fixture: a tiny city of its own)


def _dates(c):
    """A few as-of dates of both years (building all of them costs minutes)."""
    every = asof.as_of_dates(c)
    return [every[0], every[3], *every[-3:]]


def _build(c, dates):
    report = features.build_features(c, dates, fingerprints=inputs.features_fingerprints(c, dates))
    counts = labels.build_labels(c, dates, fingerprints=inputs.labels_fingerprints(c, dates))
    return report, counts


def _same_as_from_scratch(c, dates) -> None:
    features.build_features(c, dates, table="scratch.pupil_features")
    for a in dates:
        diff = c.execute(
            "SELECT count(*) FROM ((SELECT * FROM marts.pupil_features WHERE as_of_date = $1 EXCEPT ALL "
            "SELECT * FROM scratch.pupil_features WHERE as_of_date = $1) UNION ALL "
            "(SELECT * FROM scratch.pupil_features WHERE as_of_date = $1 EXCEPT ALL "
            "SELECT * FROM marts.pupil_features WHERE as_of_date = $1))", [a.date]).fetchall()[0][0]
        assert diff == 0, a
    c.execute("DROP SCHEMA scratch CASCADE")


def test_a_second_build_with_nothing_new_rebuilds_nothing(fresh):
    dates = _dates(fresh)
    first, _ = _build(fresh, dates)
    assert len(first.as_of_dates) == len(dates) and first.unchanged == []
    before = fresh.execute("SELECT * FROM marts.pupil_features ORDER BY ALL").fetchall()
    again, counts = _build(fresh, dates)
    assert again.as_of_dates == [] and again.unchanged == sorted(a.date.isoformat() for a in dates)
    assert all(c.get("unchanged") for c in counts.values())
    assert fresh.execute("SELECT * FROM marts.pupil_features ORDER BY ALL").fetchall() == before


def test_a_new_school_day_rebuilds_only_the_dates_that_could_see_it(fresh):
    dates = _dates(fresh)
    _build(fresh, dates)
    latest = max(a.date for a in dates)
    # a late row for the newest day (known that day: before only the latest as-of date)
    day = fresh.execute("SELECT max(date) FROM staging.attendance_daily").fetchall()[0][0]
    fresh.execute("INSERT INTO staging.attendance_daily BY NAME SELECT * REPLACE ('absent_other' AS status, "
                "'late_pupil' AS pupil_id) FROM staging.attendance_daily WHERE date = ? LIMIT 1", [day])
    report, counts = _build(fresh, dates)
    assert report.as_of_dates == [latest.isoformat()]
    year = asof.school_year_of(latest)
    # labels read the whole year's attendance (the 30th absence is future information)
    rebuilt = {d for d, c in counts.items() if not c.get("unchanged")}
    assert rebuilt == {a.date.isoformat() for a in dates if a.school_year == year}
    _same_as_from_scratch(fresh, dates)


def test_a_late_correction_rebuilds_every_date_after_it(fresh):
    dates = _dates(fresh)
    _build(fresh, dates)
    first = min(a.date for a in dates)
    changed = fresh.execute("SELECT date, pupil_id FROM staging.attendance_daily WHERE date < ? AND status = 'present' "
                          "ORDER BY date DESC, pupil_id LIMIT 1", [first]).fetchall()[0]
    fresh.execute("UPDATE staging.attendance_daily SET status = 'absent_sick' WHERE date = ? AND pupil_id = ?",
                list(changed))
    report, _ = _build(fresh, dates)
    assert report.as_of_dates == sorted(a.date.isoformat() for a in dates if a.date > changed[0])
    assert report.unchanged == sorted(a.date.isoformat() for a in dates if a.date <= changed[0])
    _same_as_from_scratch(fresh, dates)


def test_rows_changed_in_place_or_new_code_change_every_fingerprint(fresh, monkeypatch):
    dates = _dates(fresh)
    feats, labs = inputs.features_fingerprints(fresh, dates), inputs.labels_fingerprints(fresh, dates)
    # a key rotation rewrites every pseudonym in place: same files, same counts, other rows
    fresh.execute("UPDATE staging.attendance_daily SET pupil_id = pupil_id || 'x'")
    rotated = inputs.features_fingerprints(fresh, dates)
    assert all(rotated[d] != feats[d] for d in feats)
    assert all(fp != labs[d] for d, fp in inputs.labels_fingerprints(fresh, dates).items())
    monkeypatch.setattr(inputs, "code_fingerprint", lambda: "other code")
    assert all(fp != rotated[d] for d, fp in inputs.features_fingerprints(fresh, dates).items())


def test_removed_dates_forget_their_inputs(fresh):
    dates = _dates(fresh)
    _build(fresh, dates)
    gone = dates[0].date
    features.build_features(fresh, dates[1:], stale=[gone], fingerprints=inputs.features_fingerprints(fresh, dates[1:]))
    assert fresh.execute("SELECT count(*) FROM marts.as_of_inputs WHERE mart = 'marts.pupil_features' "
                       "AND as_of_date = ?", [gone]).fetchall()[0][0] == 0
    report, _ = _build(fresh, dates)
    assert report.as_of_dates == [gone.isoformat()]


def test_sums_before_a_date_count_only_earlier_groups():
    s = inputs.Sums([date(2024, 4, 1), date(2024, 4, 2), date(2024, 4, 5)], [2, 3, 4], [10, 20, 40])
    assert s.before(date(2024, 4, 1)) == (0, 0)
    assert s.before(date(2024, 4, 2)) == (2, 10)
    assert s.before(date(2024, 4, 3)) == (5, 30)
    assert s.before(date(2025, 1, 1)) == (9, 70)
    assert s.at(date(2024, 4, 5)) == (4, 40) and s.at(date(2024, 4, 3)) == (0, 0)
