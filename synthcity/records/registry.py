"""児童生徒名簿 (学齢簿): one row per pupil and school per school year."""

from __future__ import annotations

from typing import Iterator

import pandas as pd

from synthcity.city import City


def pupil_registry(city: City) -> Iterator[pd.DataFrame]:
    persons = city.persons
    for y in city.years:
        sp = city.population.spells
        sp = sp[sp.school_year == y].sort_values(["school", "grade", "class_no", "seat"])
        pid = sp.pid.to_numpy()
        p = persons.iloc[pid]
        yield pd.DataFrame({
            "school_year": y,
            "pupil_id": p.student_number.to_numpy(),
            "resident_id": p.resident_number.to_numpy(),
            "name": p.name.to_numpy(),
            "kana": p.kana.to_numpy(),
            "birth_date": p.birth_date.to_numpy(),
            "sex": p.sex.to_numpy(),
            "school_code": city.codes(sp.school.to_numpy()),
            "grade": sp.grade.to_numpy(),
            "class_name": sp.class_no.astype(str).to_numpy(),
            "seat_number": sp.seat.to_numpy(),
            "address": p.address.to_numpy(),
            "enrolled_on": sp.enrolled_on.to_numpy(),
            "left_on": sp.left_on.to_numpy(),
            "left_on__known": sp.left_on.to_numpy(),  # a transfer out is known once it happens
        })
