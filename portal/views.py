"""The portal's pages. Every view needs a login (LoginRequiredMiddleware); every pupil or
school is checked against the user's scope (portal/access.py) before anything is read."""

from __future__ import annotations

import csv
import io
from datetime import date

from django.contrib import messages
from django.contrib.auth.decorators import login_not_required
from django.db import transaction
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from portal import access, audit
from portal.forms import AuditSearchForm, CloseIncidentForm, DecisionForm, ExportForm, ListFilter, OutcomeForm
from portal.models import AuditEntry, Incident, SupportEntry
from portal.roles import screen_rules
from portal.serving import NoSnapshot
from portal.supportcsv import choices, write_landing_file
from toda_platform.identity import IdentityStore
from toda_platform.settings import Paths

UNREGISTERED = "氏名未登録"


def portal_context(request):
    """as-of date and role on every page."""
    ctx = {"role": access.user_role(request.user) if request.user.is_authenticated else None}
    try:
        ctx["snapshot_meta"] = access.snapshot().meta()
    except NoSnapshot:
        ctx["snapshot_meta"] = None
    return ctx


def _identities(role, pupil_ids) -> dict:
    if role is None or not role.names or not pupil_ids:
        return {}
    return IdentityStore(Paths.from_env().identity, read_only=True).lookup(pupil_ids)


def _label(role, ident: dict, pupil_id: str) -> dict:
    if role is None or not role.names:
        return {"name": f"ID {pupil_id}", "kana": "", "seat": None, "named": False}
    rec = ident.get(pupil_id)
    if rec is None or not rec.name:
        return {"name": UNREGISTERED, "kana": "", "seat": None, "named": False}
    return {"name": rec.name, "kana": rec.kana or "", "seat": rec.seat_number, "named": True}


def _log(request, action, role, **kw):
    return audit.record(action, username=request.user.get_username(), role=role.key if role else "", **kw)


# ---------------------------------------------------------------------------------------------

@require_GET
def home(request):
    role = access.user_role(request.user)
    profile = getattr(request.user, "profile", None)
    if role is None:
        if request.user.is_staff:
            return redirect("admin:index")
        access.refuse(request, "user without a role")
    if role.manage_users:
        return redirect("admin:index")
    if role.audit_log:
        return redirect("audit")
    if role.scope == "school":
        return redirect("school", school_code=profile.school_code)
    if role.scope == "all":
        return redirect("schools")
    return redirect("alerts")


def _no_snapshot(request):
    return render(request, "portal/no_snapshot.html", status=503)


def _require_scope(request, scopes: tuple[str, ...], what: str):
    role = access.user_role(request.user)
    if role is None or role.scope not in scopes:
        access.refuse(request, what)
    return role


@require_GET
def schools(request):
    _require_scope(request, ("all", "school"), "role has no school list")
    try:
        rows = access.schools_in_scope(request.user)
        counts = {(r["school_code"], r["band"]): r["n"] for r in access.snapshot().query(
            "SELECT school_code, band, count(*) AS n FROM risk WHERE band IS NOT NULL GROUP BY ALL")}
        known = {r["school_code"]: r["n"] for r in access.snapshot().query(
            "SELECT school_code, count(*) AS n FROM known GROUP BY ALL")}
    except NoSnapshot:
        return _no_snapshot(request)
    for s in rows:
        s["bands"] = [(b, counts.get((s["school_code"], b), 0)) for b in ("赤", "ピンク", "橙", "黄")]
        s["known"] = known.get(s["school_code"], 0)
    return render(request, "portal/schools.html", {"schools": rows})


def alerts_for(*, school_code: str | None = None, pupils: set[str] | None = None) -> list[dict]:
    """Alerts from the snapshot and the portal's own support entries."""
    snap = access.snapshot()
    meta = snap.meta()
    where, params = ("WHERE school_code = ?", [school_code]) if school_code else ("", [])
    found = []
    if meta.get("previous_as_of_date"):
        for r in snap.query(f"SELECT pupil_id, school_code, prev_band FROM risk {where} "
                            f"{'AND' if where else 'WHERE'} band = '赤' AND coalesce(prev_band, '') <> '赤'", params):
            found.append({"kind": "new_red", "pupil_id": r["pupil_id"], "school_code": r["school_code"],
                          "text": f"新たに赤（前回 {r['prev_band'] or '帯なし'}）"})
    for r in snap.query(f"""SELECT m.pupil_id, m.last_date, coalesce(r.school_code, k.school_code) AS school_code
                            FROM mood_alert m LEFT JOIN risk r USING (pupil_id) LEFT JOIN known k USING (pupil_id)"""):
        if school_code is None or r["school_code"] == school_code:
            found.append({"kind": "mood", "pupil_id": r["pupil_id"], "school_code": r["school_code"],
                          "text": f"心の健康観察で3回続けて「雨」以下（最新 {r['last_date']:%m/%d}）"})
    for r in snap.query(f"SELECT pupil_id, school_code, streak_now, streak_prev FROM known {where} "
                        f"{'AND' if where else 'WHERE'} streak_prev IS NOT NULL AND streak_now > streak_prev "
                        "AND streak_now >= 3", params):
        found.append({"kind": "streak", "pupil_id": r["pupil_id"], "school_code": r["school_code"],
                      "text": f"連続欠席が {r['streak_prev']}日 → {r['streak_now']}日に"})
    overdue = SupportEntry.objects.filter(outcome="", review_on__lt=timezone.localdate())
    if school_code:
        overdue = overdue.filter(school_code=school_code)
    for e in overdue:
        found.append({"kind": "review", "pupil_id": e.pupil_id, "school_code": e.school_code,
                      "text": f"支援の見直し日（{e.review_on:%m/%d}）を過ぎています"})
    if pupils is not None:
        found = [a for a in found if a["pupil_id"] in pupils]
    return found


def _school_in_scope(request, school_code: str):
    """(role, snapshot, the school's row), or refused (portal/access.py)."""
    role = access.check_school(request, school_code)
    snap = access.snapshot()
    return role, snap, snap.query("SELECT * FROM schools WHERE school_code = ?", [school_code])[0]


@require_GET
def school(request, school_code: str):
    try:
        role, snap, info = _school_in_scope(request, school_code)
        rows = snap.query("SELECT * FROM risk WHERE school_code = ? AND band IS NOT NULL "
                          "ORDER BY rank_in_school", [school_code])
        known = snap.query("SELECT * FROM known WHERE school_code = ? ORDER BY grade, class_name",
                           [school_code])
        unbanded = snap.query("SELECT count(*) AS n FROM risk WHERE school_code = ? AND band IS NULL",
                              [school_code])[0]["n"]
        alerts = alerts_for(school_code=school_code)
    except NoSnapshot:
        return _no_snapshot(request)
    grades = sorted({r["grade"] for r in rows + known})
    classes = sorted({r["class_name"] for r in rows + known if r["class_name"]})
    filt = ListFilter(request.GET or None, grades=grades, classes=classes)
    if filt.is_bound and filt.is_valid():
        g, c = filt.cleaned_data["grade"], filt.cleaned_data["class_name"]
        rows = [r for r in rows if (g is None or r["grade"] == g) and (not c or r["class_name"] == c)]
        known = [r for r in known if (g is None or r["grade"] == g) and (not c or r["class_name"] == c)]
    ids = [r["pupil_id"] for r in rows + known] + [a["pupil_id"] for a in alerts]
    ident = _identities(role, ids)
    for r in rows + known + alerts:
        r["who"] = _label(role, ident, r["pupil_id"])
    _log(request, "view_school", role, school_code=school_code,
         pupil_ids=sorted({r["pupil_id"] for r in rows + known}) if role.names else (),
         detail=f"{len(rows)} listed, {len(known)} known cases" + (" with names" if role.names else ""))
    return render(request, "portal/school.html", {
        "school": info, "rows": rows, "known": known, "alerts": alerts, "filter": filt,
        "unbanded": unbanded, "can_export": role.export_names})


def _timeline(pupil_id: str) -> dict:
    snap = access.snapshot()
    q = lambda sql: snap.query(sql, [pupil_id])  # noqa: E731
    return {
        "att_weeks": q("SELECT * FROM att_week WHERE pupil_id = ? ORDER BY week_start"),
        "mood_weeks": q("SELECT * FROM mood_week WHERE pupil_id = ? ORDER BY week_start"),
        "nurse": q("SELECT * FROM nurse WHERE pupil_id = ? ORDER BY visit_date DESC"),
        "surveys": q("SELECT * FROM surveys WHERE pupil_id = ? ORDER BY survey_date DESC"),
        "events": q("SELECT * FROM events WHERE pupil_id = ? ORDER BY event_date DESC"),
        "support": q("SELECT * FROM support WHERE pupil_id = ? ORDER BY decided_on DESC"),
        "mood_alert": q("SELECT * FROM mood_alert WHERE pupil_id = ?"),
    }


@require_GET
def pupil(request, pupil_id: str):
    try:
        role, info = access.check_pupil(request, pupil_id)
        tl = _timeline(pupil_id)
        alerts = alerts_for(pupils={pupil_id})
    except NoSnapshot:
        return _no_snapshot(request)
    who = _label(role, _identities(role, [pupil_id]), pupil_id)
    for a in alerts:
        a["who"] = who
    totals = {k: sum(w[k] for w in tl["att_weeks"]) for k in
              ("school_days", "absent_sick", "absent_other", "late", "nurse_room", "separate_room")}
    entries = list(SupportEntry.objects.filter(pupil_id=pupil_id))
    labels = {c: dict(choices(c)) for c in ("action", "agency", "outcome")}
    for e in entries:
        e.action_ja, e.agency_ja = labels["action"][e.action], labels["agency"][e.agency]
        e.outcome_ja = labels["outcome"].get(e.outcome, "")
        e.overdue = not e.outcome and e.review_on < timezone.localdate()
    _log(request, "view_pupil", role, school_code=info["school_code"], pupil_ids=[pupil_id],
         detail="with name" if who["named"] else "")
    return render(request, "portal/pupil.html", {
        "p": info, "who": who, "tl": tl, "totals": totals, "alerts": alerts, "entries": entries,
        "reasons": [info.get(f"reason_{i}") for i in range(1, 6) if info.get(f"reason_{i}")],
        "decision_form": DecisionForm() if role.record_support else None,
        "outcome_form": OutcomeForm() if role.record_support else None})


@require_GET
def pupil_chart(request, pupil_id: str):
    from portal.charts import timeline_png

    try:
        access.check_pupil(request, pupil_id)
        tl = _timeline(pupil_id)
    except NoSnapshot:
        return _no_snapshot(request)
    resp = HttpResponse(timeline_png(tl["att_weeks"], tl["mood_weeks"]), content_type="image/png")
    resp["Cache-Control"] = "private, no-store"
    return resp


def _new_case_id(pupil_id: str) -> str:
    """Random, not derived from the pseudonym: a 記録番号 is quoted in the audit log, which keeps
    it after the pupil is erased (until 2026-11-30 it carried 6 characters of the pseudonym)."""
    import secrets

    stamp = timezone.localtime().strftime("%Y%m%d%H%M%S")
    return f"P{stamp}-{secrets.token_hex(3)}-{SupportEntry.objects.count() + 1}"


@require_POST
def record_decision(request, pupil_id: str):
    role = access.require(request, "record_support")
    role, info = access.check_pupil(request, pupil_id)
    form = DecisionForm(request.POST)
    if not form.is_valid():
        messages.error(request, "入力に誤りがあります：" + " ".join(e for errs in form.errors.values() for e in errs))
        return redirect("pupil", pupil_id=pupil_id)
    d = form.cleaned_data
    with transaction.atomic():
        entry = SupportEntry.objects.create(
            case_id=_new_case_id(pupil_id), pupil_id=pupil_id, school_code=info["school_code"],
            decided_on=d["decided_on"], risk_band=info.get("band") or "", action=d["action"],
            agency=d["agency"], person_in_charge=d["person_in_charge"], review_on=d["review_on"],
            created_by=request.user.get_username())
        entry.last_file = write_landing_file(entry).name
        entry.save(update_fields=["last_file"])
        _log(request, "support_decision", role, school_code=info["school_code"], pupil_ids=[pupil_id],
             detail=f"{entry.case_id} {d['action']} {d['agency']} review {d['review_on']} -> {entry.last_file}")
    messages.success(request, f"ケース会議の決定を記録しました（記録番号 {entry.case_id}）。")
    return redirect("pupil", pupil_id=pupil_id)


@require_POST
def record_outcome(request, case_id: str):
    access.require(request, "record_support")
    entry = SupportEntry.objects.filter(case_id=case_id).first()
    if entry is None:
        access.refuse(request, "unknown case")
    role, info = access.check_pupil(request, entry.pupil_id)
    form = OutcomeForm(request.POST)
    if not form.is_valid():
        messages.error(request, "経過を選んでください。")
        return redirect("pupil", pupil_id=entry.pupil_id)
    with transaction.atomic():
        entry.outcome, entry.outcome_on = form.cleaned_data["outcome"], timezone.localdate()
        entry.last_file = write_landing_file(entry).name
        entry.save()
        _log(request, "support_outcome", role, school_code=entry.school_code, pupil_ids=[entry.pupil_id],
             detail=f"{entry.case_id} outcome {entry.outcome} -> {entry.last_file}")
    messages.success(request, "経過を記録しました。")
    return redirect("pupil", pupil_id=entry.pupil_id)


FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def neutralise(value) -> str:
    """A cell that a spreadsheet would read as a formula is prefixed with a quote."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_START) else text


@require_http_methods(["GET", "POST"])
def export(request, school_code: str):
    role = access.check_school(request, school_code)
    if not role.export_names:
        access.refuse(request, "role may not export", school_code=school_code)
    form = ExportForm(request.POST or None)
    if request.method == "GET" or not form.is_valid():
        return render(request, "portal/export.html", {"form": form, "school_code": school_code},
                      status=200 if request.method == "GET" else 400)
    snap = access.snapshot()
    rows = snap.query("SELECT * FROM risk WHERE school_code = ? AND band IS NOT NULL ORDER BY rank_in_school",
                      [school_code])
    known = snap.query("SELECT * FROM known WHERE school_code = ? ORDER BY grade, class_name", [school_code])
    ident = IdentityStore(Paths.from_env().identity, read_only=True).lookup(
        [r["pupil_id"] for r in rows + known])
    from portal.templatetags.portal_extras import grade_label, trend_label

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(["区分", "学年", "組", "出席番号", "氏名", "ふりがな", "リスク区分", "新規", "傾向",
                "理由1", "理由2", "理由3", "欠席（病気以外）", "仮名ID"])
    for kind, items in (("リスク", rows), ("既知", known)):
        for r in items:
            rec = ident.get(r["pupil_id"])
            w.writerow([neutralise(v) for v in (
                kind, grade_label(r["grade"]), r["class_name"], rec.seat_number if rec else "",
                (rec.name if rec and rec.name else UNREGISTERED), rec.kana if rec else "",
                r.get("band", ""), "新規" if r.get("is_new") else "", trend_label(r.get("trend")) if kind == "リスク" else "",
                r.get("reason_1"), r.get("reason_2"), r.get("reason_3"),
                r.get("nonillness_absent_days", ""), r["pupil_id"])])
    purpose = form.purpose_text()
    _log(request, "export", role, school_code=school_code, purpose=purpose,
         pupil_ids=[r["pupil_id"] for r in rows + known], detail=f"{len(rows) + len(known)} rows with names")
    as_of = snap.meta()["as_of_date"]
    resp = HttpResponse(buf.getvalue().encode("cp932", errors="replace"), content_type="text/csv; charset=cp932")
    resp["Content-Disposition"] = f'attachment; filename="caselist_{school_code}_{as_of}.csv"'
    resp["Cache-Control"] = "private, no-store"
    return resp


@require_GET
def alerts(request):
    role = access.user_role(request.user)
    profile = getattr(request.user, "profile", None)
    if role is None or not role.sees_pupils:
        access.refuse(request, "role sees no pupils")
    try:
        if role.scope == "all":
            found, mine = alerts_for(), None
        elif role.scope == "school":
            found, mine = alerts_for(school_code=profile.school_code), None
        else:
            mine = access.agency_pupils(profile.agency)
            found = alerts_for(pupils=mine)
        cases = []
        if mine is not None:
            for pid in sorted(mine):
                p = access.find_pupil(pid)
                if p:
                    cases.append(p)
    except NoSnapshot:
        return _no_snapshot(request)
    ident = _identities(role, [a["pupil_id"] for a in found + cases])
    for r in found + cases:
        r["who"] = _label(role, ident, r["pupil_id"])
    _log(request, "view_alerts", role, pupil_ids=sorted({r["pupil_id"] for r in found + cases}) if role.names else (),
         detail=f"{len(found)} alerts")
    return render(request, "portal/alerts.html", {"alerts": found, "cases": cases, "agency_scope": mine is not None})


# ---------------------------------------------------------------------------------------------
# 学校カルテ, the effect of support, the 貧困・虐待 screen (issue 11)
# ---------------------------------------------------------------------------------------------

def _png(data: bytes | None) -> HttpResponse:
    if data is None:
        raise Http404("chart not drawn")
    resp = HttpResponse(data, content_type="image/png")
    resp["Cache-Control"] = "private, no-store"
    return resp


def _effects(snap) -> dict | None:
    from ml.support_effects import effects_page
    from portal.karte import effects_view

    if not snap.has("outputs.support_effects"):
        return None
    with snap.cursor() as cur:
        return effects_view(effects_page(cur, Paths.from_env().reports))


def _require_board(request):
    return _require_scope(request, ("all",), "role does not see every school")


@require_GET
def karte(request, school_code: str):
    from ml.karte import karte_page
    from portal.karte import ASSOCIATION_NOTE, NO_CLEAR_DIFFERENCE, school_view

    try:
        role, snap, info = _school_in_scope(request, school_code)
        view = None
        if snap.has("outputs.school_karte") and snap.has("outputs.karte_practices"):
            with snap.cursor() as cur:
                try:
                    view = school_view(karte_page(cur, school_code, Paths.from_env().reports))
                except KeyError:  # a school without a karte row (new, or no aggregates yet)
                    view = None
        effects = _effects(snap)
        has_chart = snap.chart(f"karte/{school_code}.png") is not None
    except NoSnapshot:
        return _no_snapshot(request)
    _log(request, "view_karte", role, school_code=school_code,
         detail=f"学校カルテ {view['latest_year']}" if view else "学校カルテ (none yet)")
    return render(request, "portal/karte.html", {
        "school": info, "k": view, "effects": effects, "has_chart": has_chart,
        "no_clear": NO_CLEAR_DIFFERENCE, "association_note": ASSOCIATION_NOTE,
        "can_screen": role.hardship_screen})


@require_GET
def karte_chart(request, school_code: str):
    try:
        access.check_school(request, school_code)
        return _png(access.snapshot().chart(f"karte/{school_code}.png"))
    except NoSnapshot:
        return _no_snapshot(request)


@require_GET
def board_karte(request):
    from ml.karte import board_page
    from portal.karte import board_headline, board_rows, screen_counts

    role = _require_board(request)
    try:
        snap = access.snapshot()
        names = {r["school_code"]: r["school_name"] for r in snap.query("SELECT * FROM schools")}
        rows, year = [], None
        if snap.has("outputs.school_karte"):
            with snap.cursor() as cur:
                year = board_page(cur, Paths.from_env().reports)["school_year"]
                rows = board_rows(cur.execute("SELECT * FROM outputs.school_karte").df(), names)
        counts = []
        if snap.has("outputs.hardship_screen"):
            rules = screen_rules()
            counts = screen_counts(snap.query(
                "SELECT school_code, count(*) AS n_screened, count(*) FILTER (WHERE screen_score >= ?) "
                "AS n_listed, any_value(as_of_date) AS as_of_date FROM outputs.hardship_screen "
                "GROUP BY ALL ORDER BY school_code", [rules.min_score]))
            for c in counts:
                c["school_name"] = names.get(c["school_code"], c["school_code"])
        effects = _effects(snap)
        has_chart = snap.chart("karte/beating_odds.png") is not None
    except NoSnapshot:
        return _no_snapshot(request)
    _log(request, "view_board_karte", role, detail=f"{len(rows)} schools, year {year}")
    return render(request, "portal/board_karte.html", {
        "rows": rows, "school_year": year, "headline": board_headline(rows),
        "effects": effects, "has_chart": has_chart, "counts": counts,
        "min_score": screen_rules().min_score})


@require_GET
def board_chart(request):
    _require_board(request)
    try:
        return _png(access.snapshot().chart("karte/beating_odds.png"))
    except NoSnapshot:
        return _no_snapshot(request)


@require_GET
def effects_chart(request):
    _require_scope(request, ("all", "school"), "role sees no school reports")
    try:
        return _png(access.snapshot().chart("support/support_effects.png"))
    except NoSnapshot:
        return _no_snapshot(request)


@require_GET
def screen(request, school_code: str):
    from ml.hardship import screen_page
    from portal.karte import indicators_in_words, listed

    rules = screen_rules()
    try:
        role, snap, info = _school_in_scope(request, school_code)
        if not role.hardship_screen:
            access.refuse(request, "role lacks hardship_screen", school_code=school_code)
        if not snap.has("outputs.hardship_screen"):
            page, rows, screened, on_list, fired = None, [], 0, set(), {}
        else:
            with snap.cursor() as cur:
                page = screen_page(cur, school_code)
            screened = snap.query("SELECT count(*) AS n FROM outputs.hardship_screen WHERE school_code = ?",
                                  [school_code])[0]["n"]
            rows = listed(page["pupils"], screened, top_share=rules.top_share,
                          min_score=rules.min_score).to_dict("records")
            fired = {r["pupil_id"]: r["indicators_json"] for r in snap.query(
                "SELECT pupil_id, indicators_json FROM outputs.hardship_screen WHERE school_code = ?",
                [school_code])}
            on_list = {r["pupil_id"] for r in snap.query(
                "SELECT pupil_id FROM risk WHERE school_code = ? UNION "
                "SELECT pupil_id FROM known WHERE school_code = ?", [school_code, school_code])}
    except NoSnapshot:
        return _no_snapshot(request)
    ident = _identities(role, [r["pupil_id"] for r in rows])
    for r in rows:
        r["who"] = _label(role, ident, r["pupil_id"])
        r["linked"] = r["pupil_id"] in on_list
        r["indicators"] = indicators_in_words(fired.get(r["pupil_id"]))
    as_of = page["as_of_date"] if page else None
    _log(request, "view_screen", role, school_code=school_code, pupil_ids=[r["pupil_id"] for r in rows],
         detail=f"貧困・虐待 screen as of {as_of}: {len(rows)} listed of {screened} screened"
                + (" with names" if role.names else ""))
    return render(request, "portal/screen.html", {
        "school": info, "page": page, "rows": rows, "screened": screened, "as_of": as_of,
        "top_pct": f"{rules.top_share * 100:g}", "min_score": f"{rules.min_score:g}"})


@require_GET
def audit_log(request):
    role = access.require(request, "audit_log")
    from portal.misuse import scan

    scan()
    verdict = audit.verify()
    search = AuditSearchForm(request.GET or None)
    about = None
    if search.is_valid():
        pupil_id = search.cleaned_data["pupil_id"]
        about = list(audit.about(pupil_id)[:500])
        _log(request, "audit_search", role, pupil_ids=[pupil_id],
             detail=f"who looked at a pupil: {len(about)} entries")
    _log(request, "view_audit", role, detail=verdict.message())
    return render(request, "portal/audit.html", {
        "verdict": verdict, "entries": AuditEntry.objects.order_by("-seq")[:200], "search": search,
        "about": about, "incidents": Incident.objects.all()[:100], "close_form": CloseIncidentForm()})


@require_POST
def close_incident(request, incident_id: int):
    role = access.require(request, "audit_log")
    incident = get_object_or_404(Incident, pk=incident_id)
    form = CloseIncidentForm(request.POST)
    if form.is_valid() and incident.is_open:
        incident.closed_at, incident.closed_by = timezone.now(), request.user.get_username()
        incident.note = form.cleaned_data["note"]
        incident.save()
        _log(request, "close_incident", role, detail=f"incident {incident.pk} ({incident.rule}, "
                                                     f"{incident.username}): {incident.note[:200]}")
        messages.success(request, "インシデントを閉じました。")
    else:
        messages.error(request, "確認内容を記入してください。")
    return redirect(reverse("audit"))


@login_not_required
@require_GET
def notice(request):
    """The notice to families (お知らせ), public: generated from the catalogue like `toda notice`."""
    from toda_platform.governance.documents import notice_context

    return render(request, "portal/notice.html", notice_context())
