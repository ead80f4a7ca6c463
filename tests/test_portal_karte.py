"""The 学校カルテ, support-effects and 貧困・虐待 screen pages on the tiny city (hand-made outputs in
tests/portal_city.py): values shown, who may see what, and the audit log."""

from __future__ import annotations

import re

import pytest

from portal import audit
from portal.models import AuditEntry
from tests.portal_city import B9
from tests.portal_fixtures import city, login, published_home, users  # noqa: F401
from tests.tiny_city import B1, C1

pytestmark = pytest.mark.django_db
PNG = b"\x89PNG\r\n\x1a\n"


def _text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)).strip()


def _figure(html: str, cell: str) -> str:
    block = html[html.index(f'<div class="figure" data-cell="{cell}">'):]
    return _text(block[:block.index("</div>\n</div>")]).strip()


def test_karte_shows_the_school_against_the_city_and_its_past(login):
    c = login("principal_b1")
    resp = c.get(f"/schools/{B1}/karte/")
    assert resp.status_code == 200
    html = resp.content.decode()
    text = _text(html)
    assert "学校カルテ 戸田第一小学校" in text
    # beating the odds: pooled interval clears zero -> the verdict in words
    assert "子どもたちの学力の伸びが大きい学校です" in text
    assert "+0.120（95%区間 +0.050 〜 +0.190）" in text
    # 不登校: 2024 is in progress (no survey yet) -> the newest published year, 2023, with the
    # elementary city average over B1 (300 pupils) and B9 (100): (1.20*300 + 2.40*100) / 400
    assert _figure(html, "futoukou_rate") == "不登校の割合（%） 2023年度 1.20% 市平均 1.50%・前年度 1.50%"
    att = _figure(html, "attendance_rate")
    assert "2024年度（途中）" in att and "96.2%" in att and "市平均 95.9%・前年度 96.0%" in att
    ot = _figure(html, "overtime_mean_hours")
    assert "40.0時間" in ot and "市平均 41.0時間" in ot
    # a small cell stays hidden
    row = html[html.index('<tr data-cell="qu_share_needs_support"'):]
    assert "非公表（10人未満）" in row[:row.index("</tr>")]
    # by year: 2023 clears zero (verdict), 2024 does not (no verdict)
    assert "2023年度 +0.100（95%区間 +0.020 〜 +0.180）" in text and "2024年度 +0.140" in text
    # practices worded as association
    assert "授業改善の取組（教員質問紙）：高い学校ほど、学力の伸びが期待を上回る傾向があります" in text
    assert "原因とは限りません" in text and "原因）を示すものではありません" in text
    # support: naive beside adjusted, the sentence on why they differ
    visit = _text(html[html.index('data-action="家庭訪問"'):][:400])
    assert "40人" in visit and "29.90倍" in visit and "0.87倍" in visit and "0.82倍 〜 0.92倍" in visit
    assert "病気以外の欠席が約13%少なくなっています" in visit
    assert "はっきりした差は見られません" in _text(html[html.index('data-action="見守り"'):][:400])
    assert "単純な比較と調整後が大きく違う理由" in text and "欠席が増え始めた子どもに選ばれる" in text
    assert "まだ記録がない支援：SC面談" in text
    # the charts come from the snapshot
    for url in (f"/schools/{B1}/karte/chart.png", "/support/effects.png"):
        png = c.get(url)
        assert png.status_code == 200 and png.content[:8] == PNG and len(png.content) > 10_000
    e = AuditEntry.objects.filter(action="view_karte").last()
    assert (e.school_code, e.outcome, e.subjects, e.detail) == (B1, "ok", "", "学校カルテ 2024")


def test_no_verdict_where_the_interval_crosses_zero(login):
    text = _text(login("principal_c1").get(f"/schools/{C1}/karte/").content.decode())
    assert "-0.010（95%区間 -0.080 〜 +0.060）" in text
    assert "はっきりした差があるとは言えません" in text
    assert "伸びが大きい学校です" not in text and "伸びが小さい学校です" not in text
    assert "2024年度 非公表（10人未満）" in text  # 8 pupils


@pytest.mark.parametrize("user, status", [("principal_c1", 403), ("ssw", 403), ("auditor", 403),
                                          ("principal_b1", 200), ("vp_b1", 200), ("board", 200)])
def test_karte_scope(login, user, status):
    c = login(user)
    assert c.get(f"/schools/{B1}/karte/").status_code == status
    assert c.get(f"/schools/{B1}/karte/chart.png").status_code == status
    if status == 403:
        refused = AuditEntry.objects.filter(action="refused", username=user).order_by("seq")
        assert [e.detail.split(":")[0] for e in refused] == [f"GET /schools/{B1}/karte/",
                                                             f"GET /schools/{B1}/karte/chart.png"]
        assert all(e.outcome == "refused" and e.school_code == B1 for e in refused)


def test_board_sees_every_school_side_by_side(login):
    c = login("board")
    html = c.get("/board/karte/").content.decode()
    rows = {m.group(1): _text(m.group(2)) for m in
            re.finditer(r'<tr data-school="(\w+)">(.*?)</tr>', html[:html.index("支援の効果（市全体）")], re.S)}
    assert set(rows) == {B1, B9, C1}
    assert "上回る" in rows[B1] and "下回る" in rows[B9] and "差があるとは言えない" in rows[C1]
    assert "1.20% 市 1.50%" in rows[B1]
    assert "4.50%" in rows[C1]  # the only junior high: its own city average
    # support effects, naive beside adjusted
    assert "29.90倍" in html and "0.87倍" in html and "単純な比較と調整後が大きく違う理由" in html
    # the screen as counts only: B1 has 2 pupils at 3 points or more (hidden), C1 12 of 32
    counts = {m.group(1): _text(m.group(2)) for m in
              re.finditer(r'<tr data-school="(\w+)">(.*?)</tr>', html[html.index("screen-counts"):], re.S)}
    assert counts[B1] == "戸田第一小学校 44人 10人未満 —"
    assert counts[C1] == "戸田中学校 32人 12人 37.5%"
    assert "/pupils/" not in html and "/screen/" not in html
    png = c.get("/board/karte/beating_odds.png")
    assert png.status_code == 200 and png.content[:8] == PNG
    assert AuditEntry.objects.filter(action="view_board_karte", outcome="ok").count() == 1
    # the board's list and nav link to it; a school's page links to its karte
    assert "/board/karte/" in c.get("/schools/").content.decode()
    assert f"/schools/{B1}/karte/" in c.get(f"/schools/{B1}/").content.decode()


@pytest.mark.parametrize("user", ["principal_b1", "ssw", "auditor"])
def test_board_page_refused_to_other_roles(login, user):
    c = login(user)
    assert c.get("/board/karte/").status_code == 403
    assert c.get("/board/karte/beating_odds.png").status_code == 403
    assert AuditEntry.objects.filter(action="refused", username=user, outcome="refused").count() == 2


def test_screen_lists_pupils_to_assess_with_indicators_in_words(login):
    c = login("principal_b1")
    html = c.get(f"/schools/{B1}/screen/").content.decode()
    text = _text(html)
    assert "これは判断ではありません" in text and "人が確認するため" in text
    # 44 screened: the top 5 % is rank <= 3; p5 (rank 3, 2 points) is under the minimum of 3
    listed = re.findall(r'data-pupil="(\w+)"', html)
    assert listed == ["p1", "p3"]
    p1 = _text(html[html.index('data-pupil="p1"'):html.index('data-pupil="p3"')])
    assert "5点" in p1 and "山田 葵" in p1 and "小5・校内 1位" in p1
    assert p1.index("保育園入所時の調整指数が高い") < p1.index("むし歯が未処置のまま")
    assert "髙橋 花子" in text and "乳幼児健診の未受診がある" in text
    assert "<script>alert" not in html  # the name is escaped
    assert "本校の対象 44人" in text and "2人" in text
    assert "調整指数はひとり親" in text  # why each indicator matters
    e = AuditEntry.objects.filter(action="view_screen").last()
    assert (e.school_code, audit.pupils_of(e), e.outcome) == (B1, ["p1", "p3"], "ok")
    assert "2 listed of 44 screened" in e.detail and "with names" in e.detail
    assert f"/schools/{B1}/screen/" in c.get(f"/schools/{B1}/").content.decode()


def test_screen_ties_share_a_rank(login):
    html = login("principal_c1").get(f"/schools/{C1}/screen/").content.decode()
    listed = re.findall(r'data-pupil="(\w+)"', html)
    assert listed[0] == "p2" and sorted(listed[1:]) == [f"c{i:02d}" for i in range(1, 12)]


@pytest.mark.parametrize("user", ["board", "ssw", "auditor", "principal_c1"])
def test_screen_refused_and_hidden_for_roles_not_entitled(login, user):
    c = login(user)
    assert c.get(f"/schools/{B1}/screen/").status_code == 403
    e = AuditEntry.objects.filter(username=user).order_by("seq").last()
    assert (e.action, e.outcome, e.school_code) == ("refused", "refused", B1)
    assert not AuditEntry.objects.filter(action="view_screen").exists()
    if user == "board":
        assert "/screen/" not in c.get(f"/schools/{B1}/").content.decode()
        assert "/screen/" not in c.get(f"/schools/{B1}/karte/").content.decode()


def test_vice_principal_is_entitled_to_the_screen(login):
    assert login("vp_b1").get(f"/schools/{B1}/screen/").status_code == 200


def test_snapshot_carries_the_outputs_and_their_charts(city):
    from portal.serving import SnapshotReader

    snap = SnapshotReader(city.serving)
    assert all(snap.has(f"outputs.{t}") for t in ("school_karte", "karte_practices", "support_effects",
                                                  "hardship_screen"))
    assert {r["name"] for r in snap.query("SELECT name FROM charts")} == {
        f"karte/{B1}.png", f"karte/{C1}.png", f"karte/{B9}.png", "karte/beating_odds.png",
        "support/support_effects.png"}
    assert snap.query("SELECT count(*) AS n, count(DISTINCT as_of_date) AS d FROM outputs.hardship_screen") == \
        [{"n": 44 + 32, "d": 1}]
    assert snap.chart("karte/nothing.png") is None


def test_a_snapshot_without_the_outputs_still_publishes_the_list(tmp_path, login):
    """A city whose outputs were never materialised: the list is published, the pages say so."""
    import duckdb

    from portal.serving import SnapshotReader, build_snapshot
    from toda_platform.settings import Paths

    paths = Paths.from_env()
    con = duckdb.connect(str(paths.warehouse))
    try:
        for t in ("school_karte", "karte_practices", "support_effects", "hardship_screen"):
            con.execute(f"DROP TABLE outputs.{t}")
        build_snapshot(con, paths)
    finally:
        con.close()
    assert not SnapshotReader(paths.serving).has("outputs.school_karte")
    c = login("principal_b1")
    assert "カルテはまだ作成されていません" in c.get(f"/schools/{B1}/karte/").content.decode()
    assert "支援の効果はまだ計算されていません" in c.get(f"/schools/{B1}/karte/").content.decode()
    assert "スクリーニングはまだ実行されていません" in c.get(f"/schools/{B1}/screen/").content.decode()
    assert c.get(f"/schools/{B1}/karte/chart.png").status_code == 404


def test_the_snapshot_follows_the_outputs_but_does_not_wait_for_a_missing_one():
    import dagster as dg

    from assets.outputs import HARDSHIP_KEY, KARTE_KEY, SUPPORT_KEY
    from assets.serving import SNAPSHOT_KEY, serving_snapshot
    from toda_platform.definitions import build_definitions

    parents = build_definitions().resolve_asset_graph().get(SNAPSHOT_KEY).parent_keys
    assert {KARTE_KEY, SUPPORT_KEY, HARDSHIP_KEY, dg.AssetKey(["outputs", "risk_scores"])} <= parents
    condition = str(serving_snapshot.automation_conditions_by_key[SNAPSHOT_KEY])
    assert "all_deps_blocking_checks_passed" in condition and "any_deps_missing" not in condition


def test_the_screen_of_many_schools_in_a_day_opens_an_incident(db):
    from portal import audit
    from portal.misuse import hits
    from portal.roles import MisuseRules

    for code in ("B1", "B2", "B3", "C1"):
        audit.record("view_screen", username="sweeper", school_code=code, pupil_ids=["p1"])
        audit.record("view_karte", username="reader", school_code=code)
    found = {(r, u) for r, u, _, _ in hits(AuditEntry.objects.all(), MisuseRules())}
    assert ("many_schools", "sweeper") in found
    assert not any(u == "reader" for _, u in found)  # school-level reports are not pupil data


def test_admin_sees_no_karte_board_or_screen(client, users, city):
    from portal.commands import add_user
    from tests.portal_fixtures import PASSWORD

    admin = add_user("sysadmin", "admin", PASSWORD)
    client.force_login(admin, backend="django.contrib.auth.backends.ModelBackend")
    for url in (f"/schools/{B1}/karte/", "/board/karte/", f"/schools/{B1}/screen/", "/support/effects.png"):
        assert client.get(url).status_code == 403, url
    assert AuditEntry.objects.filter(username="sysadmin", action="refused").count() == 4
