"""Scope checks. Anything outside a role's scope — another school, a guessed or unknown
``pupil_id`` — is refused with the same 403, and the refusal is audited."""

from __future__ import annotations

import re
from functools import lru_cache

from django.core.exceptions import PermissionDenied
from django.http import Http404

from portal import audit
from portal.roles import Role, role as role_named
from portal.serving import SnapshotReader
from toda_platform.settings import Paths

_PUPIL_ID = re.compile(r"[0-9A-Za-z_-]{1,32}")


@lru_cache(maxsize=8)
def _reader(folder: str) -> SnapshotReader:
    return SnapshotReader(folder)


def snapshot() -> SnapshotReader:
    return _reader(str(Paths.from_env().serving))


def user_role(user) -> Role | None:
    profile = getattr(user, "profile", None)
    return role_named(profile.role) if profile is not None else None


def refuse(request, what: str, *, school_code: str = "", pupil_ids=()) -> None:
    user = request.user
    r = user_role(user)
    audit.record("refused", username=user.get_username(), role=r.key if r else "",
                 school_code=school_code[:13], pupil_ids=[p[:32] for p in pupil_ids],
                 outcome="refused", detail=f"{request.method} {request.path[:200]}: {what}")
    raise PermissionDenied


def require(request, flag: str) -> Role:
    """The user's role, if it has ``flag`` (e.g. ``record_support``); else refused."""
    r = user_role(request.user)
    if r is None or not getattr(r, flag):
        refuse(request, f"role lacks {flag}")
    return r


def agency_pupils(agency: str) -> set[str]:
    from portal.models import SupportEntry

    if not agency:
        return set()
    rows = snapshot().query("SELECT DISTINCT pupil_id FROM support WHERE agency = ?", [agency])
    return {r["pupil_id"] for r in rows} | set(
        SupportEntry.objects.filter(agency=agency).values_list("pupil_id", flat=True))


def check_school(request, school_code: str) -> Role:
    r = user_role(request.user)
    profile = getattr(request.user, "profile", None)
    if r is None or r.scope not in ("all", "school") or (
            r.scope == "school" and profile.school_code != school_code):
        refuse(request, "school outside scope", school_code=school_code)
    found = snapshot().query("SELECT published FROM schools WHERE school_code = ?", [school_code])
    if not found:
        refuse(request, "unknown school", school_code=school_code)
    if not found[0]["published"]:  # not (yet) a pilot school of the city file: no page until enabled
        raise Http404("この学校はまだ公開の対象ではありません（市の設定ファイルの試行校に含まれていません）")
    return r


def find_pupil(pupil_id: str) -> dict | None:
    snap = snapshot()
    rows = snap.query("SELECT *, false AS known_case FROM risk WHERE pupil_id = ?", [pupil_id])
    if not rows:
        rows = snap.query("SELECT *, true AS known_case FROM known WHERE pupil_id = ?", [pupil_id])
    return rows[0] if rows else None


def check_pupil(request, pupil_id: str) -> tuple[Role, dict]:
    r = user_role(request.user)
    profile = getattr(request.user, "profile", None)
    pupil = find_pupil(pupil_id) if _PUPIL_ID.fullmatch(pupil_id) else None
    allowed = pupil is not None and r is not None and (
        r.scope == "all"
        or (r.scope == "school" and pupil["school_code"] == profile.school_code)
        or (r.scope == "agency" and pupil_id in agency_pupils(profile.agency)))
    if not allowed:
        refuse(request, "pupil outside scope", pupil_ids=[pupil_id])
    return r, pupil


def schools_in_scope(user) -> list[dict]:
    r = user_role(user)
    profile = getattr(user, "profile", None)
    rows = snapshot().query("SELECT * FROM schools WHERE published ORDER BY school_code")
    if r is None or r.scope not in ("all", "school"):
        return []
    return rows if r.scope == "all" else [s for s in rows if s["school_code"] == profile.school_code]
