"""Server-side charts (matplotlib with the bundled Japanese font of matplotlib-fontja): no
script or font is fetched by the browser."""

from __future__ import annotations

import io
import threading

import matplotlib

matplotlib.use("Agg")
import matplotlib_fontja  # noqa: E402,F401  (registers IPAexGothic and makes it the default)
from matplotlib.figure import Figure  # noqa: E402

_lock = threading.Lock()  # the font cache and rcParams are process-wide


def timeline_png(att_weeks: list[dict], mood_weeks: list[dict]) -> bytes:
    """Weekly attendance (stacked bars) and mood (mean of the week's check-ins, 1 雷 – 4 晴れ)."""
    with _lock:
        fig = Figure(figsize=(8, 4.6), dpi=100, layout="constrained")
        ax, ax2 = fig.subplots(2, 1, sharex=True, height_ratios=[3, 2])
        weeks = [w["week_start"] for w in att_weeks]
        series = [("absent_other", "欠席（病気以外）", "#c62828"), ("absent_sick", "欠席（病気）", "#ef9a9a"),
                  ("late", "遅刻・早退", "#f9a825"), ("rooms", "保健室・別室", "#6a1b9a")]
        bottom = [0] * len(weeks)
        for key, label, colour in series:
            values = [(w["nurse_room"] + w["separate_room"]) if key == "rooms" else
                      (w["late"] + w["early_leave"]) if key == "late" else w[key] for w in att_weeks]
            ax.bar(weeks, values, bottom=bottom, width=5, color=colour, label=label)
            bottom = [b + v for b, v in zip(bottom, values)]
        ax.set_ylabel("日数／週")
        ax.set_ylim(0, 5.5)
        ax.legend(loc="upper left", fontsize=8, ncols=4, frameon=False)
        ax.set_title("週ごとの出欠", fontsize=10, loc="left")
        if mood_weeks:
            ax2.plot([m["week_start"] for m in mood_weeks], [m["mood_mean"] for m in mood_weeks],
                     marker="o", color="#1565c0")
        ax2.set_ylim(0.8, 4.2)
        ax2.set_yticks([1, 2, 3, 4], ["雷", "雨", "くもり", "晴れ"])
        ax2.axhspan(0.8, 2.5, color="#ffcdd2", alpha=0.4)
        ax2.set_title("心の健康観察（週の平均）", fontsize=10, loc="left")
        if not mood_weeks:
            ax2.text(0.5, 0.5, "回答なし", transform=ax2.transAxes, ha="center", va="center")
        fig.autofmt_xdate()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
    return buf.getvalue()
