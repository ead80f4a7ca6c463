"""The towns the generator can simulate: school names, school numbers and districts of each.

A town is the *population* side of a profile (who lives where, which schools, which school
calendar); how its departments write their files is its city file
(``toda_platform/cities/<key>.toml``), chosen separately, so the same pupils can be written in
another vendor's exports. Everything here is fictional; the districts borrow real town names
with made-up block numbers, so no address is a real home.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Town:
    key: str  # also the packaged city file whose [calendar] the simulation follows
    elementary: tuple[str, ...]  # school name stems, in school-number order
    junior_high: tuple[str, ...]
    districts: tuple[str, ...]  # 町名 shared out among the elementary districts
    elementary_number: int  # 7-digit MEXT school number of the first elementary school, minus 1
    junior_high_number: int
    extra: str  # stem for schools beyond the named ones: f"{extra}{n}"
    address_city: str  # what addresses begin with


TOWNS = {
    "toda": Town(
        "toda",
        ("戸田第一", "戸田第二", "戸田東", "戸田南", "新曽", "芦原", "笹目", "美谷本", "美女木", "喜沢", "新曽北", "笹目東"),
        ("戸田", "戸田東", "新曽", "笹目", "美笹", "喜沢"),
        ("上戸田", "下戸田", "本町", "中町", "喜沢", "喜沢南", "川岸", "南町", "氷川町", "新曽",
         "新曽南", "笹目", "笹目南町", "笹目北町", "美女木", "美女木東", "早瀬", "下前", "戸田公園", "堤外"),
        2240100, 2240500, "戸田第", "埼玉県戸田市"),
    "warabi": Town(
        "warabi",
        ("蕨北", "蕨中央", "蕨南", "蕨西", "蕨東", "塚越", "中央東"),
        ("蕨第一", "蕨第二", "蕨東"),
        ("北町", "中央", "南町", "塚越", "錦町"),
        2230100, 2230500, "蕨第", "埼玉県蕨市"),
}


def town(key: str) -> Town:
    try:
        return TOWNS[key]
    except KeyError:
        raise KeyError(f"unknown town {key!r}; towns: {', '.join(TOWNS)}") from None
