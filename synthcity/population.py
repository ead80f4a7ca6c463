"""Pupils and their enrolment: cohorts flowing through the grades, transfers, moves, classes.

A *person* is a child who is enrolled in a city school at some point of the history. A *spell*
is one stay at one school within one school year, so the registry's rows are spells: a pupil who
moves between city schools mid-year has two (転出日 at the old school, 転入日 at the new one),
and one who arrives or leaves during the year has a 転入日 or 転出日. Day numbers in spells index
the school days of their year (see calendar.SchoolYear).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd

from synthcity import names
from synthcity.calendar import DEFAULT, SchoolCalendar, school_year
from synthcity.rng import stream

OUT_MIDYEAR = 0.012  # leave the city during the year
OUT_YEAR_END = 0.013  # leave the city at the end of March
IN_MIDYEAR = 0.012  # arrive during the year (share of the roll)
IN_APRIL = 0.013  # arrive for the start of the year
MOVE_WITHIN = 0.008  # move between city schools of the same type during the year
PRIVATE_JUNIOR_HIGH = 0.03  # leave after 小6 for a private or national junior high
BORN_IN_CITY = 0.85  # of the children who start 小1 here; transfers in are born elsewhere
CLASS_SIZE = {"elementary": 35, "junior_high": 40}


@dataclass
class Population:
    persons: pd.DataFrame  # index = pid
    spells: pd.DataFrame  # pid, school_year, school, grade, start, end, enrolled_on, left_on, class_no, seat


class _Registry:
    """Collects persons as they appear, year by year."""

    def __init__(self, rng: np.random.Generator, schools: pd.DataFrame):
        self.rng = rng
        self.schools = schools
        elem = schools.index[schools.school_type == "elementary"].to_numpy()
        w = schools.loc[elem, "size_weight"].to_numpy()
        self.elementary, self.elem_weights = elem, w / w.sum()
        self.batches: list[pd.DataFrame] = []
        self.count = 0

    def new(self, grades: np.ndarray, year: int, born_here: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Create persons in the given grades of ``year``; returns (pids, schools)."""
        n = len(grades)
        rng = self.rng
        home = rng.choice(self.elementary, size=n, p=self.elem_weights)
        entry_year = year - grades + 1
        # typed even when empty (a tiny city can have a year with nobody new in some grades)
        start = np.array([np.datetime64(date(e - 7, 4, 2), "D") for e in entry_year], dtype="datetime64[D]")
        birth = start + rng.integers(0, 365, n).astype("timedelta64[D]")
        pids = np.arange(self.count, self.count + n)
        self.count += n
        self.batches.append(pd.DataFrame({
            "pid": pids, "entry_year": entry_year, "birth_date": birth,
            "sex": np.where(rng.random(n) < 0.512, "M", "F"), "district_school": home,
            "born_in_city": born_here, "first_year": year,
        }))
        school = np.where(grades <= 6, home, self.schools.feeds.to_numpy()[home])
        return pids, school


def build_population(seed: int, schools: pd.DataFrame, years: list[int], pupils: int,
                     calendar: SchoolCalendar = DEFAULT) -> Population:
    rng = stream(seed, "population")
    reg = _Registry(rng, schools)
    feeds = schools.feeds.to_numpy()
    stype = schools.school_type.to_numpy()
    per_grade = pupils / (6 + 3 * (1 - PRIVATE_JUNIOR_HIGH))
    spells: list[dict] = []
    active_pid = active_school = active_grade = None
    for y in years:
        cal = school_year(y, calendar)
        D = cal.n
        if active_pid is None:
            counts = [round(per_grade * (1 - PRIVATE_JUNIOR_HIGH * (g >= 7)) * rng.normal(1, 0.03))
                      for g in range(1, 10)]
            grades = np.repeat(np.arange(1, 10), counts)
            active_pid, active_school = reg.new(grades, y, rng.random(len(grades)) < BORN_IN_CITY)
            active_grade = grades
        else:
            grade = active_grade + 1
            keep = (grade <= 9) & (rng.random(len(grade)) >= OUT_YEAR_END)
            to_jh = grade == 7
            keep &= ~(to_jh & (rng.random(len(grade)) < PRIVATE_JUNIOR_HIGH))
            school = np.where(to_jh, feeds[active_school], active_school)
            active_pid, active_school, active_grade = active_pid[keep], school[keep], grade[keep]
            n_first = round(per_grade * rng.normal(1, 0.03))
            first_pid, first_school = reg.new(np.ones(n_first, int), y, rng.random(n_first) < BORN_IN_CITY)
            n_in = rng.poisson(IN_APRIL * len(active_pid))
            in_grades = rng.integers(1, 10, n_in)
            in_pid, in_school = reg.new(in_grades, y, np.zeros(n_in, bool))
            active_pid = np.concatenate([active_pid, first_pid, in_pid])
            active_school = np.concatenate([active_school, first_school, in_school])
            active_grade = np.concatenate([active_grade, np.ones(n_first, int), in_grades])

        n = len(active_pid)
        u = rng.random(n)
        leaves = u < OUT_MIDYEAR
        moves = (u >= OUT_MIDYEAR) & (u < OUT_MIDYEAR + MOVE_WITHIN)
        last_day = np.where(leaves, rng.integers(0, D - 1, n), D - 1)
        move_day = rng.integers(5, D - 5, n)
        new_school = active_school.copy()
        for i in np.flatnonzero(moves):
            others = np.flatnonzero((stype == stype[active_school[i]]) & (np.arange(len(stype)) != active_school[i]))
            if len(others):
                new_school[i] = rng.choice(others)
            else:
                moves[i] = False
        base = {"school_year": y}
        stay = ~moves
        spells.append(dict(base, pid=active_pid[stay], school=active_school[stay], grade=active_grade[stay],
                           start=np.zeros(stay.sum(), int), end=last_day[stay]))
        spells.append(dict(base, pid=active_pid[moves], school=active_school[moves], grade=active_grade[moves],
                           start=np.zeros(moves.sum(), int), end=move_day[moves] - 1))
        spells.append(dict(base, pid=active_pid[moves], school=new_school[moves], grade=active_grade[moves],
                           start=move_day[moves], end=np.full(moves.sum(), D - 1)))
        n_arrive = rng.poisson(IN_MIDYEAR * n)
        arrive_grade = rng.integers(1, 10, n_arrive)
        arrive_pid, arrive_school = reg.new(arrive_grade, y, np.zeros(n_arrive, bool))
        spells.append(dict(base, pid=arrive_pid, school=arrive_school, grade=arrive_grade,
                           start=rng.integers(1, D - 5, n_arrive), end=np.full(n_arrive, D - 1)))
        stays = ~leaves
        active_pid = np.concatenate([active_pid[stays], arrive_pid])
        active_school = np.concatenate([new_school[stays], arrive_school])
        active_grade = np.concatenate([active_grade[stays], arrive_grade])

    persons = pd.concat(reg.batches, ignore_index=True).set_index("pid")
    spell_df = pd.concat([pd.DataFrame(s) for s in spells], ignore_index=True)
    _describe_persons(rng, persons, schools)
    _date_spells(spell_df, calendar)
    _assign_classes(rng, spell_df, persons, schools)
    return Population(persons, spell_df)


def _describe_persons(rng: np.random.Generator, persons: pd.DataFrame, schools: pd.DataFrame) -> None:
    """Numbers, names, readings and addresses."""
    n = len(persons)
    # 8 digits, leading zeros included (one number in nine starts with 0, as in a 校務支援 system
    # that counts from 00000001): what a re-save through Excel breaks. The same draws as before.
    persons["student_number"] = pd.Series(rng.choice(90_000_000, size=n, replace=False)).map("{:08d}".format).to_numpy()
    persons["resident_number"] = (rng.choice(9_000_000_000, size=n, replace=False) + 1_000_000_000).astype(str)
    drawn = names.draw_names(rng, persons.sex.to_numpy())
    for key, values in drawn.items():
        persons[key] = values
    persons["name"] = [names.full_name(s, g) for s, g in zip(persons.surname, persons.given)]
    persons["kana_style"] = rng.choice(3, size=n, p=[0.80, 0.14, 0.06])
    persons["kana"] = [names.written_kana(s, g, k) for s, g, k in
                       zip(persons.surname_kana, persons.given_kana, persons.kana_style)]
    towns = schools.towns.to_numpy()[persons.district_school.to_numpy()]
    persons["address"] = names.draw_addresses(rng, np.array([t[rng.integers(len(t))] for t in towns], dtype=object),
                                             schools.attrs.get("address_city", "埼玉県戸田市"))


def _date_spells(spells: pd.DataFrame, calendar: SchoolCalendar = DEFAULT) -> None:
    """転入日 / 転出日 as dates: blank for a stay from April to March."""
    enrolled_on = np.full(len(spells), np.datetime64("NaT"), dtype="datetime64[D]")
    left_on = enrolled_on.copy()
    for y, idx in spells.groupby("school_year").groups.items():
        cal = school_year(y, calendar)
        s, e = spells.loc[idx, "start"].to_numpy(), spells.loc[idx, "end"].to_numpy()
        pos = spells.index.get_indexer(idx)
        enrolled_on[pos] = np.where(s > 0, cal.days[s], np.datetime64("NaT"))
        left_on[pos] = np.where(e < cal.n - 1, cal.days[e], np.datetime64("NaT"))
    spells["enrolled_on"] = enrolled_on
    spells["left_on"] = left_on


def _assign_classes(rng: np.random.Generator, spells: pd.DataFrame, persons: pd.DataFrame,
                    schools: pd.DataFrame) -> None:
    """組 and 出席番号: classes of at most 35 (小) / 40 (中) pupils, numbered in kana order;
    pupils who arrive later join a class at the end of its list."""
    stype = schools.school_type.to_numpy()[spells.school.to_numpy()]
    cap = np.where(stype == "elementary", CLASS_SIZE["elementary"], CLASS_SIZE["junior_high"])
    group = ["school_year", "school", "grade"]
    from_april = spells.start.to_numpy() == 0
    size = spells[from_april].groupby(group).size().rename("n")
    n = spells[group].merge(size, left_on=group, right_index=True, how="left")["n"].fillna(1).to_numpy()
    n_classes = np.maximum(1, np.ceil(n / cap)).astype(int)
    order = pd.Series(rng.random(len(spells)), index=spells.index).where(from_april)
    rank = order.groupby([spells[g] for g in group]).rank(method="first").fillna(0).to_numpy().astype(int)
    class_no = np.where(from_april, rank % n_classes, rng.integers(0, 1 << 30, len(spells)) % n_classes) + 1
    spells["class_no"] = class_no
    kana = (persons.surname_kana + persons.given_kana).to_numpy()[spells.pid.to_numpy()]
    key = pd.DataFrame({"late": ~from_april, "start": spells.start, "kana": kana, "pid": spells.pid})
    key = key.sort_values(["late", "start", "kana", "pid"], kind="stable")
    spells.loc[key.index, "seat"] = key.groupby(
        [spells.loc[key.index, g] for g in group + ["class_no"]]).cumcount().to_numpy() + 1
    spells["seat"] = spells["seat"].astype(int)
