"""The notice to families in a real browser (Debian's chromium via Playwright): served without a
login, styled by its stylesheet (the portal's CSP allows no inline style), and printable — an A4
PDF is made from it. Screenshot and PDF under test-artifacts/governance/."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_portal_browser import browser  # noqa: F401
from toda_platform.city import load_city

CATALOGUE = load_city("toda").specs  # Toda's specs: what each source means and how Toda writes it

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts" / "governance"


def test_notice_is_public_styled_and_prints(live_server, browser, transactional_db):  # noqa: F811
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1280, "height": 900}, locale="ja-JP")
    errors = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(f"{live_server.url}/notice/")
    assert page.url.endswith("/notice/")  # no redirect to the login
    assert page.locator("h1").inner_text() == "児童生徒の情報の使い方について（お知らせ）"
    # the stylesheet applied (a CSP refusal would leave the browser's default)
    assert page.locator("h1").evaluate("e => getComputedStyle(e).borderBottomColor") == "rgb(43, 108, 176)"
    rows = page.locator("table.sources tbody tr")
    assert rows.count() == sum(1 for s in CATALOGUE.values() if s.use.personal)
    assert not [e for e in errors if "Content Security Policy" in e], errors
    page.screenshot(path=str(ARTIFACTS / "notice_desktop.png"), full_page=True)
    page.emulate_media(media="print")
    pdf = page.pdf(path=str(ARTIFACTS / "notice.pdf"), format="A4", print_background=True)
    assert pdf.startswith(b"%PDF") and pdf.count(b"/Type /Page") - pdf.count(b"/Type /Pages") >= 2


def test_toda_notice_pdf(tmp_path):
    from click.testing import CliRunner

    from tests.test_portal_browser import CHROMIUM
    from toda_platform.cli import main

    if not Path(CHROMIUM).exists():
        pytest.skip(f"no browser at {CHROMIUM}")
    out = CliRunner().invoke(main, ["notice", "--home", str(tmp_path), "--out", str(tmp_path), "--pdf"],
                             env={"TODA_CHROMIUM": CHROMIUM})
    assert out.exit_code == 0, out.output
    data = (tmp_path / "notice.pdf").read_bytes()
    pages = data.count(b"/MediaBox [0 0 594.9")  # A4 (595 x 842 points, as Chromium rounds it)
    assert data.startswith(b"%PDF") and pages >= 2 and pages == data.count(b"/MediaBox")
