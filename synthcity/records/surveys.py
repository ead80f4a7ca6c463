"""Survey sources: answers of the pupils who sat the survey on their school's survey day.

Signal strength follows the design (truth/sources.json): Q-U and the school-life survey read the
pupil's distress and bullying on the day (strong / moderate), class understanding, achievement,
the questionnaire and RST read academic struggle (moderate), and AiGROW reads nothing at all:
its scores are the pupil's own risk-free traits plus noise, and every enrolled pupil has a score
(make-up sittings), so not even a missing row carries signal.
"""

from __future__ import annotations

from datetime import date
from typing import Iterator

import numpy as np
import pandas as pd

from toda_platform.catalogue import QU_SURVEY
from synthcity.city import City
from synthcity.rng import stream

SCHOOL_LIFE_ROUNDS = {1: (6, 10), 2: (11, 10), 3: (2, 10)}
QU_ROUNDS = {1: (6, 15), 2: (11, 8)}
UNDERSTANDING_ROUNDS = {1: (7, 8), 2: (12, 8)}
AIGROW_ROUNDS = {1: (6, 20), 2: (1, 20)}
ACHIEVEMENT_DAY = (4, 11)
RST_DAY = (10, 15)
MISSING_ITEM = 0.02  # a Likert item left blank


def _on(y: int, month_day: tuple[int, int]) -> date:
    month, day = month_day
    return date(y + (month < 4), month, day)


def sitting(city: City, y: int, target: date, grades=range(1, 10), everyone: bool = False) -> pd.DataFrame:
    """Who sits a survey on (about) ``target``: attending pupils, or every enrolled one."""
    yd = city.days[y]
    rows = np.arange(len(yd.rows))
    day = city.survey_days(y, target, rows)
    ok = (yd.status[rows, day] >= 0) if everyone else yd.attending()[rows, day]
    ok &= np.isin(yd.rows.grade.to_numpy(), list(grades))
    r, d = rows[ok], day[ok]
    state = yd.rows.iloc[r].reset_index(drop=True)
    bully_day = state.bully_day.to_numpy()
    since = d - bully_day
    school = yd.school_on(d, r)
    out = pd.DataFrame({
        "row": r, "day": d, "date": yd.cal.days[d], "school": school,
        "school_code": city.codes(school), "pupil_id": city.numbers(state.pid.to_numpy()),
        "grade": state.grade.to_numpy(), "class_no": yd.class_on(d, r),
        "distress": yd.distress[r, d],
        "bully": np.where((bully_day >= 0) & (since >= 0), np.exp(-np.maximum(since, 0) / 25.0), 0.0),
    })
    for c in ("pid", "academic_struggle", "ability", "poor_sleep", "family_hardship"):
        out[c] = state[c].to_numpy()
    return out.sort_values(["day", "school", "grade", "class_no"], kind="stable").reset_index(drop=True)


def _likert(x: np.ndarray, lo: int, hi: int) -> np.ndarray:
    return np.clip(np.rint(x), lo, hi).astype(int)


def _with_blanks(rng, values: np.ndarray, share: float) -> pd.arrays.IntegerArray:
    return pd.array(np.where(rng.random(len(values)) < share, pd.NA, values), dtype="Int64")


def school_life_survey(city: City) -> Iterator[pd.DataFrame]:
    for y in city.years:
        rng = stream(city.seed, "school_life", y)
        frames = []
        for rnd, md in SCHOOL_LIFE_ROUNDS.items():
            s = sitting(city, y, _on(y, md))
            k = len(s)
            d, b = s.distress.to_numpy(), s.bully.to_numpy()
            items = {
                "q_friends": 3.3 - 0.45 * d - 0.8 * b,
                "q_teacher": 3.1 - 0.3 * d,
                "q_study": 3.0 - 0.5 * s.academic_struggle.to_numpy() - 0.2 * d,
                "q_safe": 3.3 - 0.45 * d - 0.7 * b,
                "q_enjoy": 3.2 - 0.55 * d,
            }
            frame = pd.DataFrame({"survey_date": s.date, "school_code": s.school_code, "pupil_id": s.pupil_id,
                                  "grade": s.grade, "round": rnd})
            for name, mean in items.items():
                frame[name] = _with_blanks(rng, _likert(mean + rng.normal(0, 0.6, k), 1, 4), MISSING_ITEM)
            frames.append(frame)
        yield pd.concat(frames, ignore_index=True)


def qu_survey(city: City) -> Iterator[pd.DataFrame]:
    """承認得点 and 被侵害得点 (10-50), and the group they put the pupil in by the publisher's norms."""
    c = QU_SURVEY.constants
    for y in city.years:
        rng = stream(city.seed, "qu", y)
        frames = []
        for rnd, md in QU_ROUNDS.items():
            s = sitting(city, y, _on(y, md))
            k = len(s)
            d, b = s.distress.to_numpy(), s.bully.to_numpy()
            unease = rng.normal(0, 1, k)  # how the pupil feels about the class: moves both scores
            approval = _likert(37.5 - 4.5 * d - 5.0 * b - 5.5 * unease + rng.normal(0, 5.0, k), 10, 50)
            infringement = _likert(18.5 + 3.5 * d + 9.0 * b + 5.5 * unease + rng.normal(0, 4.0, k), 10, 50)
            high_a = approval >= c["approval_high_from"]
            high_i = infringement >= c["infringement_high_from"]
            group = np.select(
                [high_a & ~high_i, ~high_a & ~high_i, high_a & high_i],
                ["satisfied", "unrecognised", "infringed"], "dissatisfied").astype(object)
            severe = ((group == "dissatisfied") & (approval <= c["needs_support"]["approval_at_most"])
                      & (infringement >= c["needs_support"]["infringement_at_least"]))
            group[severe] = "needs_support"
            junior = s.grade.to_numpy() >= 7
            struggle = s.academic_struggle.to_numpy()
            frames.append(pd.DataFrame({
                "survey_date": s.date, "school_code": s.school_code, "pupil_id": s.pupil_id,
                "grade": s.grade, "class_name": s.class_no.astype(str), "round": rnd,
                "approval": approval, "infringement": infringement, "group": group,
                "motivation_friends": _likert(10 - 1.2 * d - 2 * b + rng.normal(0, 1.5, k), 3, 12),
                "motivation_study": _likert(9.5 - 1.0 * struggle - 0.6 * d + rng.normal(0, 1.5, k), 3, 12),
                "motivation_teacher": _likert(9.5 - 0.8 * d + rng.normal(0, 1.5, k), 3, 12),
                "motivation_class": _likert(9.8 - 1.1 * d - 1.5 * b + rng.normal(0, 1.5, k), 3, 12),
                "motivation_career": pd.array(np.where(junior, _likert(9 - 0.7 * d + rng.normal(0, 1.5, k), 3, 12),
                                                       pd.NA), dtype="Int64"),
            }))
        yield pd.concat(frames, ignore_index=True)


_SUBJECTS_BY_GRADE = {
    1: ("国語", "算数"), 2: ("国語", "算数"), 3: ("国語", "算数", "理科", "社会"),
    4: ("国語", "算数", "理科", "社会"), 5: ("国語", "算数", "理科", "社会", "英語"),
    6: ("国語", "算数", "理科", "社会", "英語"), 7: ("国語", "数学", "英語", "理科", "社会"),
    8: ("国語", "数学", "英語", "理科", "社会"), 9: ("国語", "数学", "英語", "理科", "社会"),
}
_SUBJECT_EASE = {"国語": 0.1, "算数": -0.1, "数学": -0.25, "英語": -0.15, "理科": 0.05, "社会": 0.0}


def class_understanding_survey(city: City) -> Iterator[pd.DataFrame]:
    """Subjects are written as each school type names them (算数 in 小, 数学 in 中)."""
    for y in city.years:
        rng = stream(city.seed, "understanding", y)
        frames = []
        for rnd, md in UNDERSTANDING_ROUNDS.items():
            s = sitting(city, y, _on(y, md))
            for g, subjects in _SUBJECTS_BY_GRADE.items():
                sg = s[s.grade == g]
                for subject in subjects:
                    k = len(sg)
                    x = (3.0 - 0.55 * sg.academic_struggle.to_numpy() - 0.2 * sg.distress.to_numpy()
                         + _SUBJECT_EASE[subject] + rng.normal(0, 0.7, k))
                    frames.append(pd.DataFrame({
                        "survey_date": sg.date, "school_code": sg.school_code, "pupil_id": sg.pupil_id,
                        "grade": sg.grade, "round": rnd, "subject": subject, "understanding": _likert(x, 1, 4),
                        "_order": sg.index.to_numpy()}))
        frame = pd.concat(frames, ignore_index=True)
        yield frame.sort_values(["round", "_order"], kind="stable").drop(columns="_order")


def _subject_offsets(city: City) -> np.ndarray:
    """Each person's lasting strength per subject (国語, 算数・数学, 英語), in ability SD."""
    return stream(city.seed, "achievement", "subjects").normal(0, 0.45, (len(city.persons), 3))


def prefectural_achievement(city: City) -> Iterator[pd.DataFrame]:
    """学力レベル 1-12 and scale score per subject, a panel that follows each pupil (小4-中3)."""
    offsets = _subject_offsets(city)
    for y in city.years:
        rng = stream(city.seed, "achievement", y)
        s = sitting(city, y, _on(y, ACHIEVEMENT_DAY), grades=range(4, 10))
        frames = []
        for j, (elem_name, jh_name, base, from_grade) in enumerate(
                (("国語", "国語", 380, 4), ("算数", "数学", 380, 4), ("英語", "英語", 420, 8))):
            sj = s[s.grade >= from_grade]
            k = len(sj)
            g = sj.grade.to_numpy()
            theta = sj.ability.to_numpy() + offsets[sj.pid.to_numpy(), j]
            score = np.clip(base + 45 * (g - 4) + 55 * theta + rng.normal(0, 15, k), 0, 1000).round(1)
            frames.append(pd.DataFrame({
                "school_year": y, "survey_date": sj.date, "school_code": sj.school_code,
                "pupil_id": sj.pupil_id, "grade": g, "subject": np.where(g <= 6, elem_name, jh_name),
                "level": np.clip(1 + (score - 200) // 50, 1, 12).astype(int), "scale_score": score,
                "_order": sj.index.to_numpy()}))
        frame = pd.concat(frames, ignore_index=True)
        yield frame.sort_values("_order", kind="stable").drop(columns="_order")


def prefectural_questionnaire(city: City) -> Iterator[pd.DataFrame]:
    for y in city.years:
        rng = stream(city.seed, "questionnaire", y)
        s = sitting(city, y, _on(y, ACHIEVEMENT_DAY), grades=range(4, 10))
        k = len(s)
        d, b = s.distress.to_numpy(), s.bully.to_numpy()
        struggle, sleep = s.academic_struggle.to_numpy(), s.poor_sleep.to_numpy()

        def scale(mean, rng=rng, k=k):
            return np.clip(mean + rng.normal(0, 0.35, k), 1, 4).round(2)

        yield pd.DataFrame({
            "school_year": y, "school_code": s.school_code, "pupil_id": s.pupil_id, "grade": s.grade,
            "self_esteem": scale(2.9 - 0.25 * d - 0.2 * b - 0.1 * struggle),
            "self_efficacy": scale(2.8 - 0.2 * struggle - 0.15 * d),
            "self_control": scale(2.9 - 0.2 * sleep),
            "diligence": scale(2.8 - 0.2 * struggle),
            "learning_strategies": scale(2.7 - 0.25 * struggle + 0.1 * s.ability.to_numpy()),
        })


RST_FIELDS = ("dependency", "anaphora", "paraphrase", "inference", "image_matching", "instantiation")


def rst(city: City) -> Iterator[pd.DataFrame]:
    """Reading-skill 能力値 (-4..4), 小6-中3, driven by reading ability."""
    offsets = _subject_offsets(city)
    for y in city.years:
        rng = stream(city.seed, "rst", y)
        s = sitting(city, y, _on(y, RST_DAY), grades=range(6, 10))
        k = len(s)
        reading = s.ability.to_numpy() + offsets[s.pid.to_numpy(), 0]
        base = -0.9 + 0.3 * (s.grade.to_numpy() - 6) + 0.7 * reading
        frame = pd.DataFrame({"test_date": s.date, "school_code": s.school_code, "pupil_id": s.pupil_id,
                              "grade": s.grade})
        for f in RST_FIELDS:
            frame[f] = np.clip(base + rng.normal(0, 0.6, k), -4, 4).round(2)
        yield frame


AIGROW_FIELDS = ("collaboration", "problem_setting", "creativity", "flexibility", "empathy",
                 "self_management", "psychological_safety", "self_affirmation")


def aigrow(city: City) -> Iterator[pd.DataFrame]:
    """Pure noise by design: traits independent of every risk driver, and no missing sittings."""
    traits = stream(city.seed, "aigrow", "traits").normal(0, 1, (len(city.persons), len(AIGROW_FIELDS)))
    for y in city.years:
        rng = stream(city.seed, "aigrow", y)
        frames = []
        for md in AIGROW_ROUNDS.values():
            s = sitting(city, y, _on(y, md), grades=range(7, 10), everyone=True)
            k = len(s)
            frame = pd.DataFrame({"test_date": s.date, "school_code": s.school_code, "pupil_id": s.pupil_id,
                                  "grade": s.grade})
            for j, f in enumerate(AIGROW_FIELDS):
                frame[f] = np.clip(50 + 7 * traits[s.pid.to_numpy(), j] + rng.normal(0, 6, k), 0, 100).round(1)
            frames.append(frame)
        yield pd.concat(frames, ignore_index=True)
