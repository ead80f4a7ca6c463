"""The portal's pages on the tiny city: values shown, scope, case-meeting entries, export."""

from __future__ import annotations

import csv
import io
from datetime import date, timedelta

import pytest

from portal import audit
from portal.models import AuditEntry, SupportEntry
from tests.portal_city import AS_OF, XSS_NAME
from tests.portal_fixtures import city, login, published_home, users  # noqa: F401
from tests.tiny_city import B1, C1

pytestmark = pytest.mark.django_db


def test_school_list_for_principal(login):
    c = login("principal_b1")
    resp = c.get(f"/schools/{B1}/")
    assert resp.status_code == 200
    html = resp.content.decode()
    assert "令和6年11月5日（2024-11-05）" in html  # as-of date, 和暦 and western
    assert "戸田第一小学校" in html
    # p1 red and first, p3 yellow and 新規; p5 has no band and is not listed; p2 is another school
    assert html.index('data-band="赤"') < html.index('data-band="黄"')
    assert html.count('class="new"') == 1 and "髙橋 花子" in html
    assert "/pupils/p5/" not in html and "/pupils/p2/" not in html
    assert "↑ 上昇" in html and "直近30日の病気以外の欠席 3日" in html
    assert "新たに赤（前回 ピンク）" in html  # alert
    assert "帯に入らない児童生徒：1人" in html
    e = AuditEntry.objects.filter(action="view_school").last()
    assert e.school_code == B1 and audit.pupils_of(e) == ["p1", "p3"] and e.outcome == "ok"


def test_known_cases_listed_apart_and_filter(login):
    c = login("principal_c1")
    html = c.get(f"/schools/{C1}/").content.decode()
    known = html[html.index("既知のケース"):]
    assert "/pupils/p4/" in known and "病気以外の欠席 30日" in known
    assert "/pupils/p4/" not in html[:html.index("既知のケース")]
    filtered = c.get(f"/schools/{C1}/", {"grade": "7"}).content.decode()
    assert "/pupils/p4/" in filtered and "/pupils/p2/" not in filtered


def test_pupil_page_timeline_and_unregistered_name(login):
    c = login("principal_b1")
    html = c.get("/pupils/p1/").content.decode()
    assert "保健室の利用（3回）" in html and "頭痛" in html
    assert "要支援群" in html and "いじめ：被害（アンケート調査）" in html
    assert "家庭訪問" in html and "改善" in html  # support record from staging
    assert "欠席（病気以外）" in html
    # a survey with one question skipped: the mean of the four answered, never "None"
    assert "学校生活アンケート：平均 2.0／4（未回答 1問）" in html and "None" not in html
    png = c.get("/pupils/p1/timeline.png")
    assert png.status_code == 200 and png.content[:8] == b"\x89PNG\r\n\x1a\n" and len(png.content) > 5000
    html5 = c.get("/pupils/p5/").content.decode()
    assert "氏名未登録" in html5
    assert audit.about("p1").filter(action="view_pupil").exists()


def test_board_sees_every_school_without_names(login):
    c = login("board")
    html = c.get("/schools/").content.decode()
    assert B1 in html and C1 in html
    html = c.get(f"/schools/{B1}/").content.decode()
    assert "ID p1" in html and "髙橋" not in html and "山田" not in html
    assert c.get("/pupils/p2/").status_code == 200


def test_case_team_sees_only_pupils_with_a_record_naming_its_agency(login):
    c = login("ssw")
    assert c.get("/pupils/p5/").status_code == 200  # an SSW support record (tiny city)
    assert c.get("/pupils/p1/").status_code == 403  # support by the school, not SSW
    assert c.get(f"/schools/{B1}/").status_code == 403
    assert "/pupils/p5/" in c.get("/alerts/").content.decode()


def test_auditor_sees_no_pupil_data(login):
    c = login("auditor")
    assert c.get("/pupils/p1/").status_code == 403
    assert c.get(f"/schools/{B1}/").status_code == 403
    resp = c.get("/audit/")
    assert resp.status_code == 200 and "改ざんは見つかりませんでした" in resp.content.decode()


def _landing(paths):
    return sorted((paths.landing / "support_records").glob("*.csv"))


def test_case_meeting_decision_then_outcome_reach_landing(login, paths):
    c = login("principal_b1")
    today = date.today()
    resp = c.post("/pupils/p1/support/", {
        "decided_on": today.isoformat(), "action": "sc_interview", "agency": "school_counsellor",
        "person_in_charge": "佐藤 教頭", "review_on": (today - timedelta(days=0)).isoformat()})
    assert resp.status_code == 302
    entry = SupportEntry.objects.get(pupil_id="p1")
    files = _landing(paths)
    assert [f.name for f in files] == [entry.last_file] and entry.last_file.startswith("支援記録_portal_")
    raw = files[0].read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))
    assert rows[0] == ["記録番号", "決定日", "学校コード", "仮名ID", "リスク区分", "支援内容", "担当", "経過", "見直し日"]
    assert rows[1] == [entry.case_id, today.isoformat(), B1, "p1", "赤", "SC面談", "SC", "", today.isoformat()]
    assert not list((paths.landing / "support_records").glob(".*"))  # no temp file left
    # the outcome re-sends the same case's row with 経過 filled
    resp = c.post(f"/support/{entry.case_id}/outcome/", {"outcome": "improved"})
    assert resp.status_code == 302
    files = _landing(paths)
    assert len(files) == 2
    second = [f for f in files if f.name != rows and f.name == SupportEntry.objects.get().last_file][0]
    again = list(csv.reader(io.StringIO(second.read_text(encoding="utf-8-sig"))))
    assert again[1][0] == entry.case_id and again[1][7] == "改善"
    assert AuditEntry.objects.filter(action="support_outcome").count() == 1


def test_decision_form_rejects_bad_input(login, paths):
    c = login("principal_b1")
    resp = c.post("/pupils/p1/support/", {"decided_on": "2024-11-01", "action": "DROP TABLE",
                                          "agency": "school", "person_in_charge": "x", "review_on": "2024-12-01"})
    assert resp.status_code == 302 and not SupportEntry.objects.exists() and not _landing(paths)
    # the board may not record decisions; a case team may not record for another agency's pupil
    assert login("board").post("/pupils/p1/support/", {}).status_code == 403


def test_overdue_review_alert(login):
    SupportEntry.objects.create(case_id="P1", pupil_id="p3", school_code=B1, decided_on=date(2024, 10, 1),
                                risk_band="黄", action="monitoring", agency="teacher",
                                person_in_charge="担任", review_on=date(2024, 10, 15), created_by="x")
    html = login("principal_b1").get(f"/schools/{B1}/").content.decode()
    assert "支援の見直し日（10/15）を過ぎています" in html


def test_export_cp932_neutralised_purpose_required_and_audited(login):
    c = login("principal_c1")
    form = c.get(f"/schools/{C1}/export.csv")
    assert form.status_code == 200 and "利用目的" in form.content.decode()
    assert c.post(f"/schools/{C1}/export.csv", {"purpose": "other"}).status_code == 400
    assert not AuditEntry.objects.filter(action="export").exists()
    resp = c.post(f"/schools/{C1}/export.csv", {"purpose": "case_meeting", "purpose_note": "11月の会議"})
    assert resp.status_code == 200 and resp["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(resp.content.decode("cp932"))))
    assert rows[0][4] == "氏名"
    p2 = next(r for r in rows if r[-1] == "p2")
    assert p2[4] == "戸田 一郎" and p2[6] == "橙"
    assert p2[9] == "'=HYPERLINK(\"http://x\")" and p2[10] == "'-1 を含む理由"
    p4 = next(r for r in rows if r[-1] == "p4")
    assert p4[0] == "既知" and p4[4] == "氏名未登録"
    e = AuditEntry.objects.get(action="export")
    assert e.purpose == "ケース会議の準備：11月の会議" and set(audit.pupils_of(e)) == {"p2", "p4"}


def test_no_snapshot_page(client, users, paths):
    client.force_login(users["principal_b1"], backend="django.contrib.auth.backends.ModelBackend")
    resp = client.get(f"/schools/{B1}/")
    assert resp.status_code in (403, 503)  # no snapshot: the school cannot be checked, nothing shown


def test_home_redirects_by_role(login):
    assert login("principal_b1").get("/").url == f"/schools/{B1}/"
    assert login("board").get("/").url == "/schools/"
    assert login("auditor").get("/").url == "/audit/"
    assert login("ssw").get("/").url == "/alerts/"
