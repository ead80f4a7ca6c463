"""The portal's own data: who is who, the audit log, case-meeting entries, incidents."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class Profile(models.Model):
    """A user's role (from roles.toml) and what it is scoped to."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="profile")
    role = models.CharField("役割", max_length=32)
    school_code = models.CharField("学校コード", max_length=13, blank=True, default="")
    agency = models.CharField("所属機関（ケース会議）", max_length=32, blank=True, default="",
                              help_text="case_team: the support_records agency code, e.g. "
                                        "school_counsellor or social_worker")

    class Meta:
        verbose_name = verbose_name_plural = "利用者の役割"

    def __str__(self) -> str:
        return f"{self.user.username} ({self.role} {self.school_code or self.agency})"


class AuditEntry(models.Model):
    """One line of the append-only audit log. ``entry_hash`` covers every field and the previous
    entry's hash, so an edit, a deletion or a reordering breaks the chain (``toda audit verify``).
    Pupils are named by subject commitments, not pseudonyms (portal/audit.py)."""

    seq = models.PositiveBigIntegerField(unique=True)
    at = models.DateTimeField()
    username = models.CharField(max_length=150)
    role = models.CharField(max_length=32, blank=True, default="")
    action = models.CharField(max_length=32)
    school_code = models.CharField(max_length=13, blank=True, default="")
    subjects = models.TextField(blank=True, default="")  # space-separated subject commitments
    purpose = models.TextField(blank=True, default="")
    outcome = models.CharField(max_length=16)
    detail = models.TextField(blank=True, default="")
    prev_hash = models.CharField(max_length=64)
    entry_hash = models.CharField(max_length=64)

    class Meta:
        ordering = ["seq"]
        verbose_name = verbose_name_plural = "監査ログ"


class SupportEntry(models.Model):
    """A case-meeting decision recorded in the portal, and later its outcome. Every save is also
    sent through the ingestion gate as a support_records file (portal/supportcsv.py)."""

    case_id = models.CharField("記録番号", max_length=32, unique=True)
    pupil_id = models.CharField(max_length=32, db_index=True)
    school_code = models.CharField(max_length=13)
    decided_on = models.DateField("決定日")
    risk_band = models.CharField("リスク区分", max_length=8)
    action = models.CharField("支援内容", max_length=32)
    agency = models.CharField("担当機関", max_length=32)
    person_in_charge = models.CharField("担当者", max_length=60)
    review_on = models.DateField("見直し日")
    outcome = models.CharField("経過", max_length=16, blank=True, default="")
    outcome_on = models.DateField(null=True, blank=True)
    created_by = models.CharField(max_length=150)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    last_file = models.CharField(max_length=200, blank=True, default="")

    class Meta:
        ordering = ["-decided_on", "-id"]
        verbose_name = verbose_name_plural = "ケース会議の記録"


class Incident(models.Model):
    """A hit of a misuse rule over the audit log; open until an auditor closes it with a note."""

    rule = models.CharField(max_length=32)
    username = models.CharField(max_length=150)
    day = models.DateField()
    detail = models.TextField()
    opened_at = models.DateTimeField(auto_now_add=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    closed_by = models.CharField(max_length=150, blank=True, default="")
    note = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["-opened_at"]
        constraints = [models.UniqueConstraint(fields=["rule", "username", "day"], name="one_incident_per_rule_user_day")]
        verbose_name = verbose_name_plural = "インシデント"

    @property
    def is_open(self) -> bool:
        return self.closed_at is None
