"""A principal's round trip in a real browser: Playwright driving Debian's chromium (no browser
download). Screenshots at desktop and phone width are saved under test-artifacts/portal/."""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path

import pytest

from tests.portal_fixtures import PASSWORD, city, published_home  # noqa: F401
from tests.tiny_city import B1

CHROMIUM = os.environ.get("TODA_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts" / "portal"


@pytest.fixture
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as e:  # pragma: no cover
        pytest.skip(f"playwright is not installed: {e}")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no browser at {CHROMIUM} (apt-get install -y chromium; .ci/run does)")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"  # Playwright's loop runs in this thread
    with sync_playwright() as p:
        try:
            b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        except Exception as e:
            pytest.skip(f"chromium at {CHROMIUM} could not start: {str(e).splitlines()[0]}")
        yield b
        b.close()


def _logged_in(browser, live_server, username: str):
    """A desktop-sized page, signed in through the login form."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1280, "height": 900}, locale="ja-JP")
    page.goto(f"{live_server.url}/")
    assert "/login/" in page.url
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    return page


def _charts_loaded(page) -> list[int]:
    """The natural width of each chart on the page (0: not loaded). One reload when one is missing:
    the test server shares one in-memory SQLite connection between its threads, and two chart
    requests saving the session at the same moment can break each other there ("cannot commit -
    no transaction is active", seen once in CI); a chart that is really broken fails both times."""
    widths = []
    for _ in range(2):
        page.wait_for_load_state("networkidle")
        widths = page.locator("img.chart").evaluate_all("imgs => imgs.map(i => i.complete ? i.naturalWidth : 0)")
        if all(w > 0 for w in widths):
            break
        page.reload()
    return widths


def _shoot(page, name: str) -> None:
    """Full-page screenshots at desktop and phone width; nothing wider than a phone's screen."""
    page.screenshot(path=str(ARTIFACTS / f"{name}_desktop.png"), full_page=True)
    page.set_viewport_size({"width": 390, "height": 844})
    page.screenshot(path=str(ARTIFACTS / f"{name}_phone.png"), full_page=True)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.set_viewport_size({"width": 1280, "height": 900})


def test_karte_board_and_screen_pages_in_a_browser(live_server, city, browser, transactional_db):
    from portal.commands import add_user
    from portal import audit
    from portal.models import AuditEntry

    add_user("kocho", "principal", PASSWORD, school=B1)
    add_user("iinkai", "board", PASSWORD)
    page = _logged_in(browser, live_server, "kocho")
    page.wait_for_url(f"**/schools/{B1}/")
    page.click("a:has-text('学校カルテ')")
    page.wait_for_url(f"**/schools/{B1}/karte/")
    assert "子どもたちの学力の伸びが大きい学校です" in page.locator("#odds .verdict").inner_text()
    assert page.locator(".figure[data-cell='futoukou_rate'] .fig-value").inner_text() == "1.20%"
    assert [w > 500 for w in _charts_loaded(page)] == [True, True]  # the karte and support charts
    _shoot(page, "karte")
    page.click("a:has-text('貧困・虐待スクリーニング')")
    page.wait_for_url(f"**/schools/{B1}/screen/")
    assert page.locator(".notice").inner_text().startswith("これは判断ではありません")
    assert page.locator(".screen-row").count() == 2
    _shoot(page, "screen")

    board = _logged_in(browser, live_server, "iinkai")
    board.wait_for_url("**/schools/")
    board.click("header a:has-text('学校カルテ')")
    board.wait_for_url("**/board/karte/")
    assert board.locator("table.board tbody tr").count() == 3
    assert board.locator("tr[data-school='%s'] .odds-word" % B1).inner_text() == "上回る"
    assert [w > 500 for w in _charts_loaded(board)] == [True, True]  # every school, support
    _shoot(board, "board_karte")
    assert AuditEntry.objects.filter(action="view_board_karte", username="iinkai").exists()
    assert any(audit.pupils_of(e) == ["p1", "p3"] for e in AuditEntry.objects.filter(action="view_screen", username="kocho"))
    for name in ("karte", "screen", "board_karte"):
        for width in ("desktop", "phone"):
            assert (ARTIFACTS / f"{name}_{width}.png").stat().st_size > 20_000


def test_principal_sees_list_opens_pupil_records_decision_logs_out(live_server, city, browser, transactional_db):
    from portal.commands import add_user
    from portal.models import AuditEntry, SupportEntry

    add_user("kocho", "principal", PASSWORD, school=B1)
    page = _logged_in(browser, live_server, "kocho")
    page.wait_for_url(f"**/schools/{B1}/")
    assert "戸田第一小学校" in page.content()
    red = page.locator(".cases .chip.band-red").first
    assert red.inner_text() == "赤"
    assert red.evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(211, 47, 47)"
    assert page.locator(".chip.band-yellow").first.evaluate("e => getComputedStyle(e).backgroundColor") == \
        "rgb(249, 168, 37)"
    _shoot(page, "school")

    page.click("a[href='/pupils/p1/']")
    page.wait_for_url("**/pupils/p1/")
    assert page.locator("img.chart").evaluate("img => img.complete && img.naturalWidth") > 0
    page.fill("#id_decided_on", date.today().isoformat())
    page.select_option("#id_action", "home_visit")
    page.select_option("#id_agency", "teacher")
    page.fill("#id_person_in_charge", "担任 鈴木")
    page.fill("#id_review_on", date.today().replace(year=date.today().year + 1).isoformat())
    page.click("#decision button[type=submit]")
    page.wait_for_selector(".msg-success")
    page.wait_for_load_state("networkidle")  # the chart
    assert "ケース会議の決定を記録しました" in page.content()
    _shoot(page, "pupil")
    assert SupportEntry.objects.get(pupil_id="p1").action == "home_visit"

    page.click("header button:has-text('ログアウト')")
    page.wait_for_url("**/login/")
    page.goto(f"{live_server.url}/pupils/p1/")
    assert "/login/" in page.url
    assert AuditEntry.objects.filter(action="logout", username="kocho").exists()
    for name in ("school_desktop", "school_phone", "pupil_desktop", "pupil_phone"):
        assert (ARTIFACTS / f"{name}.png").stat().st_size > 10_000
