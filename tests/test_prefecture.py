"""The prefecture's cross-city view: aggregates only, small cells suppressed, no hidden cell
recoverable by subtracting what is shown."""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ml.aggregates import MIN_CELL
from toda_platform.prefecture import city_totals, prefecture_totals, published_schools, school_rows


def _raw(rows):
    return pd.DataFrame([{"school_year": 2025, "school_type": "小", "enrolment": n, "long_absent": la,
                          "futoukou": f, "attended_days": 180 * n - 5 * n, "required_days": 180 * n,
                          "att_pupils": n, "school_code": code} for code, n, la, f in rows])


def _published(raw: pd.DataFrame) -> pd.DataFrame:
    """What the city's marts.school_aggregates shows of ``raw`` (the school-level rule)."""
    def ok(k, n):
        return n >= MIN_CELL and (k == 0 or k >= MIN_CELL)

    out = []
    for r in raw.itertuples():
        row = {"school_code": r.school_code, "school_name": f"{r.school_code}校", "school_type": r.school_type,
               "school_year": r.school_year, "year_complete": True,
               "enrolment": r.enrolment if r.enrolment >= MIN_CELL else None,
               "enrolment_suppressed": r.enrolment < MIN_CELL,
               "attendance_rate": None, "attendance_rate_suppressed": False}
        for cell, k in (("long_absent", r.long_absent), ("futoukou", r.futoukou)):
            good = ok(k, r.enrolment)
            row[f"{cell}_count"] = k if good else None
            row[f"{cell}_rate"] = 100 * k / r.enrolment if good else None
            row[f"{cell}_count_suppressed"] = row[f"{cell}_rate_suppressed"] = not good
        out.append(row)
    return school_rows(pd.DataFrame(out), None)


def test_a_city_total_is_shown_and_a_small_school_cell_is_protected_by_hiding_the_next_smallest():
    raw = _raw([("A", 300, 15, 12), ("B", 200, 5, 4), ("C", 250, 20, 11)])
    schools, [total] = city_totals(raw, _published(raw))[0], city_totals(raw, _published(raw))[1].to_dict("records")
    assert total["enrolment"] == 750 and total["futoukou_count"] == 27
    assert total["futoukou_rate"] == pytest.approx(100 * 27 / 750)
    assert total["long_absent_count"] == 40
    shown = dict(zip(schools.school_code, schools.futoukou_count))
    # B's 4 alone would follow from 27 - 12 - 11: the smallest shown cell (C's 11) is hidden too
    assert pd.isna(shown["B"]) and pd.isna(shown["C"]) and shown["A"] == 12
    assert schools.set_index("school_code").loc["C", "futoukou_rate_suppressed"]
    # long absence: B's 5 hidden, 40 - 15 - 20 = 5: the smallest shown (A's 15) goes too
    la = dict(zip(schools.school_code, schools.long_absent_count))
    assert pd.isna(la["B"]) and pd.isna(la["A"]) and la["C"] == 20
    assert total["attendance_rate"] == pytest.approx(175 / 180)


def test_a_city_total_from_fewer_than_ten_pupils_is_hidden():
    raw = _raw([("A", 300, 3, 2), ("B", 200, 0, 0)])
    _, totals = city_totals(raw, _published(raw))
    [total] = totals.to_dict("records")
    assert total["futoukou_count"] is None and total["futoukou_count_suppressed"]
    assert total["futoukou_rate"] is None
    assert total["enrolment"] == 500 and not total["enrolment_suppressed"]


def test_the_total_goes_when_no_shown_cell_can_cover_the_hidden_one():
    raw = _raw([("A", 300, 0, 0), ("B", 200, 12, 6)])  # B's 6 hidden; A shows 0: nothing to hide
    schools, totals = city_totals(raw, _published(raw))
    [total] = totals.to_dict("records")
    assert total["futoukou_count"] is None and total["futoukou_count_suppressed"]
    assert schools.set_index("school_code").loc["A", "futoukou_count"] == 0


def test_an_unpublished_school_counts_in_the_total_and_stays_hidden(tmp_path):
    raw = _raw([("A", 300, 15, 12), ("B", 200, 20, 13), ("P", 100, 10, 3)])
    pilot = tmp_path / "city.toml"
    pilot.write_text('[publication]\npilot_schools = ["A", "B"]\n', encoding="utf-8")
    published = published_schools(pilot)
    assert published == {"A", "B"} and published_schools(tmp_path / "none.toml") is None
    rows = school_rows(_published(raw), published)
    assert set(rows.school_code) == {"A", "B"}
    schools, totals = city_totals(raw, rows)
    [total] = totals.to_dict("records")
    # 28 - 12 - 13 = 3 would be P's cell: the smallest shown (A's 12) is hidden as well
    assert total["futoukou_count"] == 28
    assert pd.isna(schools.set_index("school_code").loc["A", "futoukou_count"])


def test_the_prefecture_adds_published_city_totals_and_hides_a_cell_when_a_city_is_hidden():
    cities = pd.DataFrame([
        {"city": "toda", "school_year": 2025, "school_type": "小", "n_schools": 12, "enrolment": 7000,
         "enrolment_suppressed": False, "long_absent_count": 120, "long_absent_count_suppressed": False,
         "futoukou_count": 80, "futoukou_count_suppressed": False},
        {"city": "warabi", "school_year": 2025, "school_type": "小", "n_schools": 7, "enrolment": 3000,
         "enrolment_suppressed": False, "long_absent_count": 40, "long_absent_count_suppressed": False,
         "futoukou_count": None, "futoukou_count_suppressed": True},
    ])
    [row] = prefecture_totals(cities).to_dict("records")
    assert (row["n_cities"], row["n_schools"], row["enrolment"], row["long_absent_count"]) == (2, 19, 10000, 160)
    assert row["long_absent_rate"] == pytest.approx(1.6)
    assert row["futoukou_count"] is None and row["futoukou_count_suppressed"] and row["futoukou_rate"] is None


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 400), st.integers(0, 40), st.integers(0, 40)), min_size=1, max_size=6))
def test_no_shown_figure_reveals_a_cell_of_one_to_nine_pupils(schools_spec):
    raw = _raw([(f"S{i}", n, max(la, f), f) for i, (n, la, f) in enumerate(schools_spec)])
    schools, totals = city_totals(raw, _published(raw))
    [total] = totals.to_dict("records")
    for cell in ("futoukou_count", "long_absent_count"):
        shown = schools[cell].dropna()
        assert ((shown == 0) | (shown >= MIN_CELL)).all()
        if total[cell] is not None:
            assert total[cell] == 0 or total[cell] >= MIN_CELL
            hidden = total[cell] - shown.sum()
            assert hidden == 0 or hidden >= MIN_CELL


def _pupils(n: int, futoukou: int) -> list[dict]:
    case = {"absent_other": 35, "absent_sick": 0, "survey": "futoukou", "qu": "satisfied", "level": 5,
            "prev_level": 4, "mood": 2}
    fine = {**case, "absent_other": 0, "survey": None}
    return [case] * futoukou + [fine] * (n - futoukou)


def test_the_prefecture_tables_from_two_cities_warehouses(tmp_path):
    """Two cities' warehouses (staging as the platform writes it), opened read-only: the school
    rows each city shows, its totals and the prefecture's, written as CSV."""
    from tests.test_school_aggregates import build_city
    from ml.aggregates import build_school_aggregates
    from toda_platform.deployment import Deployment
    from toda_platform.prefecture import build_prefecture

    d = Deployment.from_env(tmp_path / "deployment")
    # two cities with Toda's export file (Warabi's packaged file enables only its 3 pilot schools)
    specs = {"toda": [_pupils(30, 12), _pupils(20, 3), _pupils(15, 0)],  # 15 in all: 3 must stay hidden
             "minami": [_pupils(25, 10), _pupils(25, 11), _pupils(12, 0)]}
    for city, schools in specs.items():
        home = d.add_city(city)
        con, _ = build_city(schools, [12, 12, 12])
        build_school_aggregates(con)
        con.execute(f"ATTACH '{home.warehouse}' AS w")
        con.execute("COPY FROM DATABASE memory TO w")
        con.close()
    tables = build_prefecture(d)
    cities = tables["cities"].set_index("city")
    assert cities.loc["toda", "futoukou_count"] == 15 and cities.loc["minami", "futoukou_count"] == 21
    assert cities.loc["toda", "enrolment"] == 65
    schools = tables["schools"]
    toda = schools[schools.city == "toda"].set_index("school_code").futoukou_count
    # the 3 is hidden in the city, and the 12 with it (15 - 12 - 0 would give it back)
    assert toda.isna().sum() == 2 and (toda.dropna() == 0).all()
    minami = schools[schools.city == "minami"].set_index("school_code").futoukou_count
    assert sorted(minami.dropna()) == [0, 10, 11]
    [pref] = tables["prefecture"].to_dict("records")
    assert (pref["futoukou_count"], pref["enrolment"], pref["n_cities"]) == (36, 127, 2)
    written = pd.read_csv(d.prefecture / "cities.csv", encoding="utf-8-sig")
    assert list(written.columns[:2]) == ["city", "school_year"] and len(written) == 2
    assert "pupil_id" not in " ".join(pd.read_csv(d.prefecture / "schools.csv").columns)
