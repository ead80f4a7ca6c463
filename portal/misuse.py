"""Misuse rules over the audit log (thresholds in roles.toml ``[misuse]``). A hit opens an
incident, one per rule, user and day; an auditor closes it with a note."""

from __future__ import annotations

import statistics
from collections import defaultdict
from datetime import timedelta
from zoneinfo import ZoneInfo

from django.utils import timezone

from portal.models import AuditEntry, Incident
from portal.roles import MisuseRules, misuse_rules

TOKYO = ZoneInfo("Asia/Tokyo")
LOOKBACK_DAYS = 60


def hits(entries, rules: MisuseRules) -> list[tuple[str, str, object, str]]:
    """(rule, username, day, detail) for every rule broken; ``entries`` in any order."""
    refusals = defaultdict(int)
    pupils = defaultdict(set)
    schools = defaultdict(set)
    out = []
    for e in entries:
        at = e.at.astimezone(TOKYO)
        if e.outcome == "refused":
            refusals[(e.username, at.date(), at.hour)] += 1
        if e.outcome == "ok" and e.action == "view_pupil":
            pupils[(e.username, at.date())].update(e.subjects.split())  # one commitment per pupil
        if e.outcome == "ok" and e.action in ("view_school", "view_pupil", "view_screen", "export") and e.school_code:
            schools[(e.username, at.date())].add(e.school_code)
        if e.action == "export" and e.outcome == "ok" and (
                at.hour >= rules.night_start_hour or at.hour < rules.night_end_hour):
            out.append(("night_export", e.username, at.date(), f"export at {at:%H:%M} (#{e.seq})"))
    for (user, day, hour), n in refusals.items():
        if n >= rules.refusals_per_hour:
            out.append(("refusals", user, day, f"{n} refusals between {hour}:00 and {hour + 1}:00"))
    by_user = defaultdict(dict)
    for (user, day), ids in pupils.items():
        by_user[user][day] = len(ids)
    for user, days in by_user.items():
        for day, n in days.items():
            earlier = [m for d, m in days.items() if d < day]
            usual = statistics.median(earlier) if earlier else 0
            if n >= rules.pupils_per_day and n > rules.usual_factor * usual:
                out.append(("many_pupils", user, day, f"{n} pupils opened (usual day: {usual:g})"))
    for (user, day), codes in schools.items():
        if len(codes) > rules.schools_per_day:
            out.append(("many_schools", user, day, f"{len(codes)} schools: {' '.join(sorted(codes))}"))
    return out


def scan(rules: MisuseRules | None = None) -> list[Incident]:
    """Open an incident for every new hit; returns the incidents opened now."""
    rules = rules or misuse_rules()
    since = timezone.now() - timedelta(days=LOOKBACK_DAYS)
    opened = []
    for rule, user, day, detail in hits(AuditEntry.objects.filter(at__gte=since).iterator(), rules):
        incident, created = Incident.objects.get_or_create(rule=rule, username=user, day=day,
                                                           defaults={"detail": detail})
        if created:
            opened.append(incident)
    return opened


def open_incidents() -> list[Incident]:
    return list(Incident.objects.filter(closed_at__isnull=True))
