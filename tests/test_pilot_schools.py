"""Pilot schools (city file ``[publication] pilot_schools``): a school not enabled is still scored
(outputs.risk_scores keeps its pupils, for training and evaluation) but published nowhere — no
list rows in the serving snapshot, no portal page."""

from __future__ import annotations

import duckdb
import pytest

from portal.serving import SnapshotReader, build_snapshot
from tests.portal_fixtures import city, login, published_home, users  # noqa: F401
from tests.tiny_city import B1, C1
from toda_platform.city import load_city

pytestmark = pytest.mark.django_db


def _pilot(paths, schools: list[str]) -> None:
    """The home's own city file: Toda's, with these pilot schools; then publish again."""
    text = load_city("toda").file.read_text(encoding="utf-8")
    listed = ", ".join(f'"{s}"' for s in schools)
    paths.city_file.write_text(text.replace("pilot_schools = []", f"pilot_schools = [{listed}]", 1),
                               encoding="utf-8")
    assert paths.city.pilot_schools == tuple(schools)
    con = duckdb.connect(str(paths.warehouse))
    try:
        build_snapshot(con, paths)
    finally:
        con.close()


def test_without_pilot_schools_every_school_is_published(city):
    snap = SnapshotReader(city.serving)
    assert {r["school_code"] for r in snap.query("SELECT school_code FROM risk")} == {B1, C1}
    assert all(r["published"] for r in snap.query("SELECT published FROM schools"))


def test_a_school_not_enabled_is_scored_but_not_published(city):
    _pilot(city, [B1])
    con = duckdb.connect(str(city.warehouse), read_only=True)
    try:
        scored = {r[0]: r[1] for r in con.execute(
            "SELECT pupil_id, school_code FROM outputs.risk_scores WHERE as_of_date = "
            "(SELECT max(as_of_date) FROM outputs.risk_scores)").fetchall()}
    finally:
        con.close()
    assert scored["p2"] == C1  # C1's pupil is still scored
    snap = SnapshotReader(city.serving)
    listed = {r["pupil_id"]: r["school_code"] for r in snap.query("SELECT pupil_id, school_code FROM risk")}
    assert listed == {"p1": B1, "p3": B1, "p5": B1}
    assert snap.query("SELECT pupil_id FROM known") == []  # p4, C1's known case, is not published either
    assert {r["school_code"]: r["published"] for r in snap.query("SELECT * FROM schools")} == {B1: True, C1: False}


def test_portal_pages_of_a_school_not_enabled_are_not_found(city, login):
    _pilot(city, [B1])
    board = login("board")
    assert board.get(f"/schools/{B1}/").status_code == 200
    for url in (f"/schools/{C1}/", f"/schools/{C1}/karte/", f"/schools/{C1}/export.csv"):
        assert board.get(url).status_code == 404, url
    listing = board.get("/schools/").content.decode()
    assert f"/schools/{B1}/" in listing and f"/schools/{C1}/" not in listing
    assert login("principal_c1").get(f"/schools/{C1}/").status_code == 404
    assert board.get("/pupils/p2/").status_code == 403  # C1's pupil is on no published list
