"""The serving snapshot (portal/serving.py, assets/serving.py) and the misuse rules."""

from __future__ import annotations

import os
from datetime import datetime, timezone as tz

import dagster as dg
import duckdb
import pytest

from assets.ops import INCIDENTS_KEY
from assets.serving import SNAPSHOT_KEY, serving_snapshot
from portal.serving import CURRENT, SnapshotReader, build_snapshot
from resources.toda import TodaHome, warehouse_resource
from tests.portal_city import AS_OF, CURRENT as CURRENT_LIST, PREV, publish
from tests.portal_fixtures import city, published_home  # noqa: F401
from toda_platform.definitions import build_definitions


def test_snapshot_holds_the_list_trend_and_timelines(city):
    snap = SnapshotReader(city.serving)
    meta = snap.meta()
    assert meta["as_of_date"] == AS_OF.isoformat() and meta["previous_as_of_date"] == PREV.isoformat()
    risk = {r["pupil_id"]: r for r in snap.query("SELECT * FROM risk")}
    assert (risk["p1"]["band"], risk["p1"]["prev_band"], risk["p1"]["trend"], risk["p1"]["is_new"]) == \
        ("赤", "ピンク", "up", False)
    assert risk["p3"]["is_new"] and not risk["p2"]["is_new"] and risk["p2"]["trend"] == "same"
    assert risk["p1"]["class_name"] == "1"
    # p1's attendance of school year 2024 (tiny city): 5/7 other, 5/8 sick, 5/13 other, 6/5 late,
    # 6/17 + 6/18 other, 6/20 nurse room
    weeks = {r["week_start"].isoformat(): r for r in snap.query("SELECT * FROM att_week WHERE pupil_id = 'p1'")}
    assert (weeks["2024-05-06"]["absent_other"], weeks["2024-05-06"]["absent_sick"]) == (1, 1)
    assert weeks["2024-06-17"]["absent_other"] == 2 and weeks["2024-06-17"]["nurse_room"] == 1
    assert weeks["2024-06-03"]["late"] == 1
    assert sum(w["absent_other"] for w in weeks.values()) == 4
    known = snap.query("SELECT * FROM known")
    assert [(k["pupil_id"], k["nonillness_absent_days"], k["streak_now"]) for k in known] == [("p4", 30, 0)]
    assert [n["symptom"] for n in snap.query("SELECT * FROM nurse WHERE pupil_id = 'p1' ORDER BY visit_date")] == \
        ["頭痛", "腹痛", "頭痛"]


def test_swap_is_atomic_and_old_snapshots_pruned(city):
    reader = SnapshotReader(city.serving)
    first = reader.current_path()
    con_old = reader.connection()
    con = duckdb.connect(str(city.warehouse))
    try:
        rows = [(p, s, g, 0.9 if p == "p2" else sc, "赤" if p == "p2" else b, r, rs)
                for p, s, g, sc, b, r, rs in CURRENT_LIST]
        from datetime import date
        publish(con, rows, date(2024, 12, 2))
        for _ in range(3):
            published = build_snapshot(con, city)
    finally:
        con.close()
    assert (city.serving / CURRENT).is_symlink() and reader.current_path() == published.path != first
    assert reader.meta()["previous_as_of_date"] == AS_OF.isoformat()
    assert reader.query("SELECT band, prev_band FROM risk WHERE pupil_id = 'p2'") == [{"band": "赤", "prev_band": "橙"}]
    assert len(list(city.serving.glob("snapshot_*.duckdb"))) == 3  # KEEP_SNAPSHOTS
    assert not [p for p in os.listdir(city.serving) if p.startswith(".")]
    with pytest.raises(duckdb.Error):
        con_old.execute("SELECT 1")  # the reader closed the superseded connection


def test_snapshot_asset_materialises_through_the_warehouse_resource(city):
    before = SnapshotReader(city.serving).current_path()
    result = dg.materialize([serving_snapshot], resources={
        "toda": TodaHome(home=str(city.home)), "warehouse": warehouse_resource(city)})
    assert result.success
    md = result.asset_materializations_for_node(serving_snapshot.op.name)[0].metadata
    assert md["as_of_date"].value == AS_OF.isoformat() and md["rows"].value["risk"] == 4
    assert SnapshotReader(city.serving).current_path() != before


def test_definitions_wire_the_snapshot_behind_the_list():
    defs = build_definitions()
    graph = defs.resolve_asset_graph()
    parents = graph.get(SNAPSHOT_KEY).parent_keys
    assert dg.AssetKey(["outputs", "risk_scores"]) in parents
    assert graph.get(INCIDENTS_KEY) is not None
    assert "all_deps_blocking_checks_passed" in str(serving_snapshot.automation_conditions_by_key[SNAPSHOT_KEY])


@pytest.mark.django_db
def test_misuse_rules_open_incidents_and_the_check_fails_until_closed(settings):
    from portal import audit
    from portal.misuse import hits, open_incidents, scan
    from portal.models import AuditEntry
    from portal.roles import MisuseRules

    for i in range(5):
        audit.record("refused", username="snoop", outcome="refused", pupil_ids=[f"x{i}"])
    for i in range(45):
        audit.record("view_pupil", username="snoop", school_code="B1", pupil_ids=[f"p{i}"])
    for code in ("B1", "B2", "B3", "C1"):
        audit.record("view_school", username="roamer", school_code=code)
    e = audit.record("export", username="owl", school_code="B1", purpose="x")
    AuditEntry.objects.filter(pk=e.pk).update(  # 23:30 in Tokyo
        at=datetime.now(tz.utc).replace(hour=14, minute=30, second=0, microsecond=0))
    rules = {(r, u) for r, u, _, _ in hits(AuditEntry.objects.all(), MisuseRules())}
    assert {("refusals", "snoop"), ("many_pupils", "snoop"), ("many_schools", "roamer"),
            ("night_export", "owl")} <= rules
    assert ("night_export", "snoop") not in rules
    opened = scan()
    assert len(opened) >= 4 and len(scan()) == 0  # one incident per rule, user and day
    assert len(open_incidents()) == len(opened)


@pytest.mark.django_db(transaction=True)
def test_a_portal_database_behind_the_code_is_named_with_its_fix_not_a_missing_table(tmp_path):
    """A portal database copied from an older installation: ops/access_incidents says which
    migrations are missing and how to apply them, instead of failing inside the misuse rules."""
    from django.core.management import call_command

    from assets.ops import _portal_db
    from portal.commands import pending_migrations
    from resources.toda import TodaHome

    assert pending_migrations() == []
    (tmp_path / "portal").mkdir()
    (tmp_path / "portal" / "portal.sqlite3").touch()
    assert _portal_db(TodaHome(home=str(tmp_path)))
    call_command("migrate", "portal", "0001", verbosity=0)  # the older installation's schema
    try:
        assert pending_migrations() == ["portal.0002_audit_subject_commitments"]
        with pytest.raises(dg.Failure) as failure:
            _portal_db(TodaHome(home=str(tmp_path)))
        assert "portal.0002_audit_subject_commitments" in failure.value.description
        assert "`toda portal` migrates" in failure.value.description
    finally:
        call_command("migrate", verbosity=0)
    assert pending_migrations() == []
