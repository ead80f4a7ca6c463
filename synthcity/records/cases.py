"""Case records written by people: bullying incidents, counselling sessions, support decisions.

Free-text notes are realistic on purpose: they sometimes name a child, so the pipeline must
prove it never reads them (the catalogue drops them).
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import pandas as pd

from synthcity import support
from synthcity.city import City
from synthcity.rng import stream

RECOGNISED = 0.8  # of victimisations, the share the school recognises
FORMS = ("teasing", "exclusion", "light_violence", "violence", "extortion", "property", "coerced", "online")
FORM_WEIGHTS = (57, 14, 14, 3, 1, 5, 8, 6)
FOUND_BY = ("survey", "self_report", "teacher", "parent", "peer", "other")
FOUND_WEIGHTS = (50, 18, 10, 10, 7, 5)


def _surname(city: City, pid: int) -> str:
    return city.persons.surname.iat[pid]


def bullying_records(city: City) -> Iterator[pd.DataFrame]:
    """One row per pupil involved: the victim and one or two pupils of the same grade."""
    for y in city.years:
        rng = stream(city.seed, "bullying", y)
        yd = city.days[y]
        rows = yd.rows
        victims = np.flatnonzero((rows.bully_day.to_numpy() >= 0) & (rng.random(len(rows)) < RECOGNISED))
        day = np.minimum(rows.bully_day.to_numpy()[victims] + rng.geometric(0.15, len(victims)) - 1,
                         rows.end.to_numpy()[victims])
        school = yd.school_on(day, victims)
        order = np.lexsort((victims, day))
        enrolled = yd.enrolled
        grade = rows.grade.to_numpy()
        records, per_school = [], {}
        for v, d, s in zip(victims[order], day[order], school[order]):
            per_school[s] = per_school.get(s, 0) + 1
            incident = f"{y}-{s + 1:02d}-{per_school[s]:03d}"
            peers = np.flatnonzero(enrolled[:, d] & (grade == grade[v]) & (yd.school_on(d) == s))
            peers = peers[peers != v]
            culprits = rng.choice(peers, size=min(len(peers), rng.integers(1, 3)), replace=False)
            n_forms = 1 + (rng.random() < 0.25)
            forms = rng.choice(len(FORMS), size=n_forms, replace=False, p=np.array(FORM_WEIGHTS) / sum(FORM_WEIGHTS))
            found = FOUND_BY[rng.choice(len(FOUND_BY), p=np.array(FOUND_WEIGHTS) / sum(FOUND_WEIGHTS))]
            resolved = "resolved" if rng.random() < 0.3 else "ongoing"
            note = None
            if rng.random() < 0.6:
                who = f"{_surname(city, rows.pid.iat[culprits[0]])}さん" if len(culprits) else "同級生"
                note = rng.choice([f"{who}からの悪口について本人から訴え。保護者に連絡済み。",
                                   "①からかい ②無視。学年で情報共有し見守り中。",
                                   f"休み時間に{who}らとトラブル。双方から聞き取り。"])
            for pupil, role in [(v, "victim")] + [(c, "perpetrator") for c in culprits]:
                records.append((incident, yd.cal.days[d], s, rows.pid.iat[pupil], grade[pupil], role,
                                ";".join(FORMS[f] for f in forms), found, resolved, note))
        frame = pd.DataFrame(records, columns=["incident_id", "recognised_on", "school", "pid", "grade", "role",
                                               "forms", "found_by", "resolved", "notes"])
        frame["school_code"] = city.codes(frame.school.to_numpy())
        frame["pupil_id"] = city.numbers(frame.pid.to_numpy())
        yield frame.drop(columns=["school", "pid"])


def _sessions(rng: np.random.Generator, yd) -> pd.DataFrame:
    """(row, day, counsellor, topic, referred_by) of one school year's sessions."""
    rows = yd.rows
    start, end = rows.start.to_numpy(), rows.end.to_numpy()
    hardship = rows.family_hardship.to_numpy() > 0
    sessions = []

    def add(r, days, counsellor, topic, referred_by):
        for d in np.atleast_1d(days):
            sessions.append((int(r), int(min(max(d, start[r]), end[r])), counsellor, topic, referred_by))

    onset, ramp_start = rows.onset.to_numpy(), rows.ramp_start.to_numpy()
    for r in np.flatnonzero(onset >= 0):  # pupils drifting toward 不登校
        days = np.sort(rng.integers(max(ramp_start[r], start[r]), end[r] + 1, rng.poisson(2.5)))
        for d in days:
            topic = "non_attendance" if d >= onset[r] else rng.choice(["health", "friends", "study"])
            add(r, d, "social_worker" if hardship[r] and rng.random() < 0.5 else "school_counsellor", topic,
                rng.choice(["teacher", "parent", "nurse", "self"], p=[0.4, 0.3, 0.2, 0.1]))
    bullied = np.flatnonzero(rows.bully_day.to_numpy() >= 0)
    for r in bullied[rng.random(len(bullied)) < 0.5]:
        add(r, rows.bully_day.iat[r] + rng.integers(1, 11), "school_counsellor",
            rng.choice(["bullying", "friends"]), rng.choice(["teacher", "self", "parent"]))
    for r, d, a in zip(yd.decisions.row, yd.decisions.day, yd.decisions.action):
        topic = "non_attendance" if onset[r] >= 0 and d >= onset[r] else "health"
        if support.ACTIONS[a] == "sc_interview":  # a series of weekly-ish interviews
            add(r, d + 1 + np.cumsum(rng.integers(3, 8, rng.integers(3, 6))), "school_counsellor", topic, "teacher")
        elif support.ACTIONS[a] == "ssw":
            add(r, d + 1 + np.cumsum(rng.integers(5, 12, rng.integers(2, 4))), "social_worker", "family", "teacher")
        elif support.ACTIONS[a] == "support_classroom":
            add(r, d + rng.integers(1, 6), "education_counsellor", "non_attendance", "parent")
    for r in np.flatnonzero(rng.random(len(rows)) < 0.03):  # routine
        topic = ("career" if rows.grade.iat[r] == 9 and rng.random() < 0.5
                 else rng.choice(["study", "friends", "family", "other"]))
        add(r, rng.integers(start[r], end[r] + 1), rng.choice(["education_counsellor", "school_counsellor"]),
            topic, rng.choice(["self", "parent", "teacher"]))
    frame = pd.DataFrame(sessions, columns=["row", "day", "counsellor", "topic", "referred_by"])
    return frame.drop_duplicates(["row", "day"]).sort_values(["day", "row"], kind="stable")


def counseling_records(city: City) -> Iterator[pd.DataFrame]:
    """Sessions follow distress, bullying and support decisions; a few are routine."""
    for y in city.years:
        rng = stream(city.seed, "counseling", y)
        yd = city.days[y]
        rows = yd.rows
        frame = _sessions(rng, yd)
        r, d = frame.row.to_numpy(), frame.day.to_numpy()
        k = len(frame)
        pid = rows.pid.to_numpy()[r]
        notes = np.where(rng.random(k) < 0.5,
                         [f"{city.persons.surname.iat[p]}さん本人と面談。次回継続。" for p in pid], None)
        yield pd.DataFrame({
            "session_id": [f"S{y}-{i + 1:05d}" for i in range(k)],
            "session_date": yd.cal.days[d],
            "school_code": city.codes(yd.school_on(d, r)),
            "pupil_id": city.numbers(pid),
            "counsellor": frame.counsellor.to_numpy(),
            "topic": frame.topic.to_numpy(),
            "referred_by": frame.referred_by.to_numpy(),
            "linked_agency": (frame.counsellor.to_numpy() == "social_worker") | (rng.random(k) < 0.05),
            "notes": notes,
        })


def support_records(city: City) -> Iterator[pd.DataFrame]:
    """Case-meeting decisions; the outcome (経過) is filled in at the 60-day review."""
    for y in city.years:
        rng = stream(city.seed, "support_notes", y)
        yd = city.days[y]
        dec = yd.decisions.sort_values(["day", "row"], kind="stable")
        r, d, a = dec.row.to_numpy(), dec.day.to_numpy(), dec.action.to_numpy()
        k = len(dec)
        pid = yd.rows.pid.to_numpy()[r]
        notes = np.where(rng.random(k) < 0.4,
                         [f"{city.persons.surname.iat[p]}さんの欠席が続くため{support.ACTION_JA[x]}を決定。"
                          for p, x in zip(pid, a)], None)
        yield pd.DataFrame({
            "case_id": [f"C{y}-{i + 1:04d}" for i in range(k)],
            "decided_on": yd.cal.days[d],
            "school_code": city.codes(yd.school_on(d, r)),
            "pupil_id": city.numbers(pid),
            "risk_band": np.array(support.BANDS, dtype=object)[dec.band.to_numpy()],
            "action": np.array(support.ACTIONS, dtype=object)[a],
            "agency": np.array(support.AGENCY, dtype=object)[a],
            "outcome": dec.outcome.to_numpy(),
            "outcome__known": dec.outcome_known.to_numpy(),
            "notes": notes,
        })
