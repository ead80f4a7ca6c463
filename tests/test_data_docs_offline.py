"""Great Expectations' Data Docs open on a closed network: every stylesheet, script, font and
image is served from the site's own static/ folder (quality/static/, vendored), nothing from a
CDN. Checked in the HTML and in headless chromium with every non-local request blocked."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from quality import check_file, render_data_docs
from quality.docs import CDN_FILES, STATIC, localise
from tests.test_portal_browser import ARTIFACTS, browser  # noqa: F401
from tests.test_quality import context, typed
from toda_platform.city import load_city

CATALOGUE = load_city("toda").specs  # Toda's specs: what each source means and how Toda writes it

RESOURCE = re.compile(r"""<(?:script|link|img)\b[^>]*\b(?:src|href)=["']([^"']*)["']""", re.I)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    folder = tmp_path_factory.mktemp("reports") / "quality"
    bad = check_file(CATALOGUE["health_checkup"], typed("health_checkup", {"height_cm": 300.0}),
                     context("健康診断_2024.csv", headers={"height_cm": "身長"}))
    good = check_file(CATALOGUE["attendance_daily"], typed("attendance_daily", {}), context("出欠_2024-05.csv"))
    render_data_docs([bad, good], folder)
    return folder, [Path(bad.docs_page), Path(good.docs_page)]


def test_every_cdn_address_has_a_vendored_file():
    for url, local in CDN_FILES.items():
        assert (STATIC / local).stat().st_size > 200, url
    assert (STATIC / "LICENSES.md").exists()
    # font-awesome's stylesheet finds its fonts beside it
    css = (STATIC / "fontawesome/css/all.min.css").read_text()
    assert (STATIC / "fontawesome/webfonts/fa-solid-900.woff2").exists() and "../webfonts/fa-solid-900.woff2" in css


def test_pages_load_nothing_from_the_internet(site):
    folder, pages = site
    for page in pages:
        html = page.read_text(encoding="utf-8")
        resources = RESOURCE.findall(html)
        assert len(resources) >= 15  # GX's page: bootstrap, jquery, bootstrap-table, vega, ...
        assert not [r for r in resources if re.match(r"(https?:)?//", r)], page
        for r in resources:  # and each local one exists
            assert (page.parent / r.split("?")[0]).resolve().exists(), r
    assert (folder / "static/jquery/jquery.min.js").exists()


def test_an_unknown_cdn_resource_is_dropped_not_fetched():
    html = '<script src="https://cdn.example.org/x.js"></script><a href="https://example.org/">x</a>'
    out = localise(html, "../static")
    assert 'src=""' in out and 'href="https://example.org/"' in out  # a plain link stays a link


def test_the_page_works_offline_in_chromium(site, browser):  # noqa: F811
    folder, pages = site
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    external = []

    def route(r):
        if r.request.url.startswith("file://"):
            r.continue_()
        else:
            external.append(r.request.url)
            r.abort()

    page.route("**/*", route)
    page.goto(pages[0].as_uri())
    page.wait_for_load_state("load")
    assert external == []
    # bootstrap-table ran (the filter works) and the status column shows its icons
    assert page.evaluate("typeof jQuery === 'function' && typeof jQuery.fn.bootstrapTable === 'function'")
    assert page.evaluate("typeof vegaEmbed === 'function'")
    icons = page.locator("td i.fas")
    assert icons.count() >= 2
    assert page.evaluate("document.fonts.check('900 16px \"Font Awesome 6 Free\"')")
    box = icons.first.bounding_box()
    assert box and box["width"] >= 8 and box["height"] >= 8
    font = icons.first.evaluate("e => getComputedStyle(e, '::before').fontFamily")
    assert "Font Awesome" in font
    # bootstrap's stylesheet applied (its font stack on the body)
    assert "-apple-system" in page.evaluate("getComputedStyle(document.body).fontFamily")
    ARTIFACTS.parent.joinpath("data_docs").mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS.parent / "data_docs" / "validation_offline.png"), full_page=False)
