"""The portal's admin page (the system administrator's landing page) lists open alerts of
failed runs; closed ones disappear; other roles do not reach it."""

from __future__ import annotations

import os

import pytest

from toda_platform import alerts

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client, paths, settings):
    from portal.commands import add_user

    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher", *settings.PASSWORD_HASHERS]
    user = add_user("sysadmin", "admin", "a-long-enough-password-1", school="", agency="")
    client.force_login(user, backend="django.contrib.auth.backends.ModelBackend")
    return client


def test_admin_index_lists_open_alerts_of_failed_runs(admin_client, paths):
    page = admin_client.get("/admin/").content.decode()
    assert "未対応 0 件" in page and "未対応のアラートはありません" in page
    alerts.record(paths, alerts.Alert(run_id="0123abcd-run", job_name="morning_rescoring_job",
                                      assets=["outputs/risk_scores"], failed_check="scoring/feature_drift:drift_within_limit",
                                      error="DagsterAssetCheckFailedError", message="blocking check failed"))
    alerts.record(paths, alerts.Alert(run_id="closed-run", job_name="retrain_job"))
    alerts.close(paths, alerts.listed(paths)[0]["id"], "ops", "retried")  # the newest: retrain_job
    page = admin_client.get("/admin/").content.decode()
    assert "未対応 1 件" in page and page.count('class="ops-alert"') == 1
    assert "morning_rescoring_job" in page and "scoring/feature_drift:drift_within_limit" in page
    assert "retrain_job" not in page


def test_other_roles_do_not_see_the_admin_page(client, paths, settings):
    from portal.commands import add_user

    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher", *settings.PASSWORD_HASHERS]
    user = add_user("aud", "auditor", "a-long-enough-password-1", school="", agency="")
    client.force_login(user, backend="django.contrib.auth.backends.ModelBackend")
    alerts.record(paths, alerts.Alert(run_id="r", job_name="nightly_refresh_job"))
    resp = client.get("/admin/")
    assert resp.status_code == 302 and "nightly_refresh_job" not in resp.content.decode()


def test_the_admin_sees_the_open_alert_in_a_browser(live_server, paths, transactional_db):
    """Logged in through the real login page in chromium; screenshot under test-artifacts/portal/."""
    from playwright.sync_api import sync_playwright

    from portal.commands import add_user
    from tests.test_portal_browser import ARTIFACTS, CHROMIUM

    if not os.path.exists(CHROMIUM):
        pytest.skip(f"no browser at {CHROMIUM}")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    add_user("sysadmin", "admin", "a-long-enough-password-1", school="", agency="")
    alerts.record(paths, alerts.Alert(run_id="5f1c0e2a-run", job_name="nightly_refresh_job",
                                      assets=["staging/attendance_daily"],
                                      failed_check="staging/attendance_daily:table_valid",
                                      error="DagsterAssetCheckFailedError", message="blocking check failed"))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 800}, locale="ja-JP")
        page.goto(f"{live_server.url}/")
        page.fill("input[name=username]", "sysadmin")
        page.fill("input[name=password]", "a-long-enough-password-1")
        page.click("button[type=submit]")
        page.wait_for_url("**/admin/")
        row = page.locator("#ops-alerts tr.ops-alert")
        assert row.count() == 1 and "staging/attendance_daily:table_valid" in row.inner_text()
        assert "未対応 1 件" in page.locator("#ops-alerts caption").inner_text()
        page.screenshot(path=str(ARTIFACTS / "admin_ops_alerts.png"), full_page=True)
        browser.close()
