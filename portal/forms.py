from __future__ import annotations

from datetime import date, timedelta

from django import forms

from portal.supportcsv import choices


class ListFilter(forms.Form):
    """Filters of the case list: only values that exist in the list are valid."""

    grade = forms.TypedChoiceField(label="学年", required=False, coerce=int, empty_value=None)
    class_name = forms.ChoiceField(label="組", required=False)

    def __init__(self, data, *, grades, classes):
        super().__init__(data)
        from portal.templatetags.portal_extras import grade_label

        self.fields["grade"].choices = [("", "すべて")] + [(g, grade_label(g)) for g in grades]
        self.fields["class_name"].choices = [("", "すべて")] + [(c, f"{c}組") for c in classes]


class DecisionForm(forms.Form):
    decided_on = forms.DateField(label="決定日（会議日）", widget=forms.DateInput(attrs={"type": "date"}))
    action = forms.ChoiceField(label="支援内容", choices=choices("action"))
    agency = forms.ChoiceField(label="担当機関", choices=choices("agency"))
    person_in_charge = forms.CharField(label="担当者", max_length=60)
    review_on = forms.DateField(label="見直し日", widget=forms.DateInput(attrs={"type": "date"}))

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        if not self.is_bound:
            self.initial.setdefault("decided_on", date.today())
            self.initial.setdefault("review_on", date.today() + timedelta(days=28))

    def clean(self):
        data = super().clean()
        if data.get("decided_on") and data.get("review_on") and data["review_on"] < data["decided_on"]:
            raise forms.ValidationError("見直し日は決定日より後にしてください。")
        if data.get("decided_on") and data["decided_on"] > date.today():
            raise forms.ValidationError("決定日に未来の日付は入力できません。")
        return data


class OutcomeForm(forms.Form):
    outcome = forms.ChoiceField(label="経過", choices=choices("outcome"))


PURPOSES = [("case_meeting", "ケース会議の準備"), ("home_visit", "家庭訪問の計画"),
            ("board_report", "教育委員会への報告"), ("other", "その他（下に記入）")]


class ExportForm(forms.Form):
    purpose = forms.ChoiceField(label="利用目的", choices=PURPOSES)
    purpose_note = forms.CharField(label="目的の詳細", max_length=200, required=False)

    def clean(self):
        data = super().clean()
        if data.get("purpose") == "other" and not data.get("purpose_note", "").strip():
            raise forms.ValidationError("「その他」の場合は目的を記入してください。")
        return data

    def purpose_text(self) -> str:
        label = dict(PURPOSES)[self.cleaned_data["purpose"]]
        note = self.cleaned_data.get("purpose_note", "").strip()
        return f"{label}：{note}" if note else label


class CloseIncidentForm(forms.Form):
    note = forms.CharField(label="確認内容", max_length=500, widget=forms.Textarea(attrs={"rows": 2}))


class AuditSearchForm(forms.Form):
    """Who looked at this pupil (an auditor's question), by the pupil's 仮名ID."""

    pupil_id = forms.RegexField(label="仮名ID", regex=r"^[0-9A-Za-z_-]{1,32}$", max_length=32,
                                error_messages={"invalid": "仮名IDは英数字です（16文字、0-9・a-f）。"})
