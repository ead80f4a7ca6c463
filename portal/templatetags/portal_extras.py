from __future__ import annotations

from datetime import date, datetime

from django import template

register = template.Library()

ERAS = [(date(2019, 5, 1), "令和"), (date(1989, 1, 8), "平成"), (date(1926, 12, 25), "昭和")]


def wareki(d: date) -> str:
    for start, name in ERAS:
        if d >= start:
            y = d.year - start.year + 1
            return f"{name}{'元' if y == 1 else y}年{d.month}月{d.day}日"
    return f"{d.year}年{d.month}月{d.day}日"


@register.filter
def jdate(value) -> str:
    """令和8年11月6日（2026-11-06）"""
    if value in (None, ""):
        return "—"
    if isinstance(value, str):
        value = date.fromisoformat(value[:10])
    if isinstance(value, datetime):
        value = value.date()
    return f"{wareki(value)}（{value.isoformat()}）"


BAND_CLASS = {"赤": "band-red", "ピンク": "band-pink", "橙": "band-orange", "黄": "band-yellow"}


@register.filter
def band_class(band) -> str:
    return BAND_CLASS.get(band or "", "band-none")


TREND = {"up": "↑ 上昇", "down": "↓ 低下", "same": "→ 横ばい", "none": "—"}


@register.filter
def trend_label(trend) -> str:
    return TREND.get(trend or "none", "—")


@register.filter
def grade_label(grade) -> str:
    if grade in (None, ""):
        return "—"
    g = int(grade)
    return f"小{g}" if g <= 6 else f"中{g - 6}"
