"""The catalogue is complete and self-consistent: every source of SOURCES.md has a spec, an asset
and a generator, and every spec's SQL rules run against its own staged columns."""

from __future__ import annotations

import re
from pathlib import Path

import duckdb
import pytest

from toda_platform.city import load_city
from toda_platform.ingest import table_columns

CATALOGUE = load_city("toda").specs  # Toda's specs: what each source means and how Toda writes it

SOURCES_MD = Path(__file__).resolve().parents[2] / "shared" / "design" / "SOURCES.md"
EXPECTED = {
    "pupil_registry", "attendance_daily", "long_absence_survey", "bullying_records",
    "counseling_records", "school_life_survey", "health_checkup", "prefectural_achievement",
    "prefectural_questionnaire", "nurse_office_visits", "aigrow", "qu_survey",
    "class_understanding_survey", "rst", "mood_checkin", "infant_checkup", "nursery_enrollment",
    "support_records", "school_master", "school_context", "teacher_survey",
    "teacher_stress_check", "teacher_overtime",
}


def test_every_source_has_a_spec():
    assert set(CATALOGUE) == EXPECTED
    if SOURCES_MD.exists():  # the design document, when this checkout has it beside it
        tables = SOURCES_MD.read_text("utf-8").split("## Base rates")[0]
        keys = set(re.findall(r"^\| ([a-z_]+) \|", tables, re.M)) - {"key"}
        assert keys == EXPECTED


def test_every_source_has_a_staging_asset():
    from assets.sources import staging_assets

    keys = {a.key.path[1] for a in staging_assets}
    assert keys == EXPECTED
    assert all(a.key.path[0] == "staging" for a in staging_assets)


def test_every_source_has_a_generator():
    from synthcity.records import BUILDERS

    assert set(BUILDERS) == EXPECTED


@pytest.mark.parametrize("key", sorted(EXPECTED))
def test_spec_is_consistent(key):
    spec = CATALOGUE[key]
    names = [c.name for c in spec.columns]
    assert len(names) == len(set(names)), "duplicate column names"
    headers = [h for c in spec.columns for h in c.headers]
    assert len(headers) == len(set(headers)), "one header maps to two columns"
    staged = {c.staged_name for c in spec.staged_columns}
    assert set(spec.key_columns) <= staged
    for col in spec.columns:
        if col.kind in ("category", "multi", "bool"):
            assert col.values, f"{col.name} needs its allowed values"
        if col.kind in ("pupil_number", "resident_number"):
            assert col.pii == "pseudonymise"
        if col.min is not None and col.max is not None:
            assert col.min < col.max
    if spec.grain == "school":
        assert not any(c.kind in ("pupil_number", "resident_number") for c in spec.columns)
    # no name, kana or address is ever staged
    for col in spec.columns:
        if any(w in col.header for w in ("氏名", "ふりがな", "カナ", "住所")):
            assert col.pii in ("drop", "identity") and not col.staged, col.name
            # names are never a reason to reject a registry: they are optional
            assert not col.required or col.pii == "drop", col.name


@pytest.mark.parametrize("key", sorted(EXPECTED))
def test_knowledge_and_period_rules_run_on_the_staged_columns(key):
    spec = CATALOGUE[key]
    con = duckdb.connect()
    cols = ", ".join(f'"{n}" {t}' for n, t in table_columns(spec) if n != "known_date")
    con.execute(f"CREATE TABLE t ({cols})")
    con.execute(f"SELECT ({spec.known_from})::DATE, ({spec.period})::VARCHAR FROM t").fetchall()


def test_knowledge_rules_say_what_the_issue_requires():
    con = duckdb.connect()

    def known(key, **values):
        spec = CATALOGUE[key]
        cols = ", ".join(f"{v!r}::{dict(table_columns(spec))[k]} AS {k}" for k, v in values.items())
        return str(con.execute(f"SELECT ({spec.known_from})::DATE FROM (SELECT {cols})").fetchone()[0])

    assert known("attendance_daily", date="2024-06-03") == "2024-06-03"
    assert known("long_absence_survey", school_year=2024) == "2025-05-01"  # only after the year ends
    assert known("qu_survey", survey_date="2024-06-10") == "2024-07-01"  # when results return
    assert known("teacher_overtime", month="2024-05-01") == "2024-06-15"
