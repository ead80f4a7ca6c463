"""Names, readings and addresses that look like a Japanese city's registers.

Some families write their name with the CP932-only variant kanji 髙 (ハシゴ高) and 﨑 (タツサキ):
real registers hold them, Python's ``shift_jis`` codec cannot encode them, and a pipeline that
decodes CP932 as Shift_JIS breaks on exactly these rows. Every character here is in CP932.
Addresses use the town's district names (synthcity/towns.py) with made-up block numbers, so no
address is a real home.
"""

from __future__ import annotations

import jaconv
import numpy as np

# (kanji, reading, relative frequency)
SURNAMES = (
    ("佐藤", "さとう", 60), ("鈴木", "すずき", 55), ("高橋", "たかはし", 42), ("髙橋", "たかはし", 9),
    ("田中", "たなか", 40), ("伊藤", "いとう", 36), ("渡辺", "わたなべ", 32), ("渡邊", "わたなべ", 4),
    ("山本", "やまもと", 33), ("中村", "なかむら", 32), ("小林", "こばやし", 32), ("加藤", "かとう", 27),
    ("吉田", "よしだ", 26), ("山田", "やまだ", 25), ("佐々木", "ささき", 21), ("山口", "やまぐち", 19),
    ("松本", "まつもと", 19), ("井上", "いのうえ", 18), ("木村", "きむら", 17), ("林", "はやし", 16),
    ("斎藤", "さいとう", 16), ("齋藤", "さいとう", 4), ("清水", "しみず", 15), ("山崎", "やまざき", 14),
    ("山﨑", "やまざき", 5), ("森", "もり", 14), ("池田", "いけだ", 13), ("橋本", "はしもと", 13),
    ("阿部", "あべ", 13), ("石川", "いしかわ", 12), ("山下", "やました", 12), ("中島", "なかじま", 12),
    ("石井", "いしい", 12), ("小川", "おがわ", 12), ("前田", "まえだ", 11), ("岡田", "おかだ", 11),
    ("長谷川", "はせがわ", 11), ("藤田", "ふじた", 11), ("後藤", "ごとう", 11), ("近藤", "こんどう", 11),
    ("村上", "むらかみ", 10), ("遠藤", "えんどう", 10), ("青木", "あおき", 10), ("坂本", "さかもと", 10),
    ("斉藤", "さいとう", 10), ("福田", "ふくだ", 9), ("太田", "おおた", 9), ("西村", "にしむら", 9),
    ("藤井", "ふじい", 9), ("金子", "かねこ", 9), ("岡本", "おかもと", 9), ("藤原", "ふじわら", 9),
    ("中野", "なかの", 8), ("三浦", "みうら", 8), ("原田", "はらだ", 8), ("中川", "なかがわ", 8),
    ("松田", "まつだ", 8), ("竹内", "たけうち", 8), ("小野", "おの", 8), ("田村", "たむら", 8),
    ("中山", "なかやま", 7), ("和田", "わだ", 7), ("石田", "いしだ", 7), ("森田", "もりた", 7),
    ("上田", "うえだ", 7), ("原", "はら", 7), ("内田", "うちだ", 7), ("柴田", "しばた", 7),
    ("酒井", "さかい", 7), ("宮崎", "みやざき", 5), ("宮﨑", "みやざき", 3), ("横山", "よこやま", 6),
    ("高木", "たかぎ", 5), ("髙木", "たかぎ", 2), ("安藤", "あんどう", 6), ("宮本", "みやもと", 6),
    ("大野", "おおの", 6), ("小島", "こじま", 6), ("谷口", "たにぐち", 6), ("工藤", "くどう", 6),
    ("今井", "いまい", 6), ("高田", "たかだ", 4), ("髙田", "たかだ", 2), ("増田", "ますだ", 5),
    ("丸山", "まるやま", 5), ("杉山", "すぎやま", 5), ("村田", "むらた", 5), ("大塚", "おおつか", 5),
    ("新井", "あらい", 8), ("荒井", "あらい", 4), ("小山", "こやま", 5), ("平野", "ひらの", 5),
    ("野口", "のぐち", 5), ("関", "せき", 5), ("島田", "しまだ", 5), ("岩崎", "いわさき", 4),
    ("岩﨑", "いわさき", 2), ("尾崎", "おざき", 3), ("尾﨑", "おざき", 1), ("川口", "かわぐち", 4),
    ("グエン", "ぐえん", 3), ("王", "おう", 2), ("李", "り", 2), ("陳", "ちん", 2), ("サントス", "さんとす", 1),
)

GIVEN_NAMES = {
    "M": (
        ("蓮", "れん"), ("陽翔", "はると"), ("湊", "みなと"), ("蒼", "あおい"), ("樹", "いつき"),
        ("大翔", "ひろと"), ("悠真", "ゆうま"), ("朝陽", "あさひ"), ("颯真", "そうま"), ("陽太", "ひなた"),
        ("悠人", "ゆうと"), ("奏太", "そうた"), ("律", "りつ"), ("結翔", "ゆいと"), ("大和", "やまと"),
        ("翔太", "しょうた"), ("拓海", "たくみ"), ("健太", "けんた"), ("翼", "つばさ"), ("颯", "はやて"),
        ("陸", "りく"), ("海斗", "かいと"), ("大輝", "だいき"), ("優斗", "ゆうと"), ("蒼空", "そら"),
        ("晴", "はる"), ("新", "あらた"), ("航", "わたる"), ("翔", "しょう"), ("太郎", "たろう"),
        ("誠", "まこと"), ("隼人", "はやと"), ("瑛太", "えいた"), ("碧", "あお"), ("亮", "りょう"),
        ("健", "けん"), ("悠", "はるか"), ("陽斗", "はると"), ("康介", "こうすけ"), ("直樹", "なおき"),
    ),
    "F": (
        ("陽葵", "ひまり"), ("凛", "りん"), ("詩", "うた"), ("結菜", "ゆいな"), ("芽依", "めい"),
        ("葵", "あおい"), ("紬", "つむぎ"), ("澪", "みお"), ("結愛", "ゆあ"), ("莉子", "りこ"),
        ("杏", "あん"), ("美咲", "みさき"), ("さくら", "さくら"), ("花", "はな"), ("結衣", "ゆい"),
        ("心春", "こはる"), ("陽菜", "ひな"), ("彩花", "あやか"), ("優奈", "ゆうな"), ("愛莉", "あいり"),
        ("美月", "みづき"), ("千尋", "ちひろ"), ("楓", "かえで"), ("琴音", "ことね"), ("菜々子", "ななこ"),
        ("真央", "まお"), ("遥", "はるか"), ("七海", "ななみ"), ("恵", "めぐみ"), ("萌", "もえ"),
        ("栞", "しおり"), ("杏奈", "あんな"), ("舞", "まい"), ("桜", "さくら"), ("綾香", "あやか"),
        ("美結", "みゆ"), ("心結", "みゆ"), ("花音", "かのん"), ("由奈", "ゆな"), ("京子", "きょうこ"),
    ),
}

BUILDINGS = ("コーポ戸田", "ハイツ彩湖", "メゾン荒川", "パークサイド戸田", "グリーンヒル新曽", "レジデンス北戸田")


def draw_names(rng: np.random.Generator, sex: np.ndarray) -> dict[str, np.ndarray]:
    """Surname and given name (kanji and hiragana reading) for each person."""
    n = len(sex)
    weights = np.array([w for _, _, w in SURNAMES], dtype=float)
    s = rng.choice(len(SURNAMES), size=n, p=weights / weights.sum())
    surname = np.array([k for k, _, _ in SURNAMES], dtype=object)[s]
    surname_kana = np.array([r for _, r, _ in SURNAMES], dtype=object)[s]
    given = np.empty(n, dtype=object)
    given_kana = np.empty(n, dtype=object)
    for code, names in GIVEN_NAMES.items():
        mask = sex == code
        g = rng.integers(0, len(names), size=int(mask.sum()))
        given[mask] = np.array([k for k, _ in names], dtype=object)[g]
        given_kana[mask] = np.array([r for _, r in names], dtype=object)[g]
    return {"surname": surname, "surname_kana": surname_kana, "given": given, "given_kana": given_kana}


def full_name(surname: str, given: str) -> str:
    return f"{surname}\u3000{given}"  # registers separate the names with an ideographic space


def written_kana(surname_kana: str, given_kana: str, style: int) -> str:
    """The reading as a clerk typed it: 0 = ひらがな, 1 = カタカナ, 2 = half-width ｶﾀｶﾅ."""
    if style == 0:
        return f"{surname_kana}\u3000{given_kana}"
    kata = f"{jaconv.hira2kata(surname_kana)}\u3000{jaconv.hira2kata(given_kana)}"
    if style == 1:
        return kata
    return jaconv.z2h(kata, kana=True, ascii=True, digit=False)


def draw_addresses(rng: np.random.Generator, towns: np.ndarray, city: str = "埼玉県戸田市") -> np.ndarray:
    """A made-up street address in the given town for each household.

    About one in ten is typed with full-width digits and the full-width minus (－, CP932 only).
    """
    n = len(towns)
    chome, banchi, go = rng.integers(1, 6, n), rng.integers(1, 31, n), rng.integers(1, 26, n)
    building = rng.random(n) < 0.3
    bname = rng.integers(0, len(BUILDINGS), n)
    room = rng.integers(1, 6, n) * 100 + rng.integers(1, 10, n)
    wide = rng.random(n) < 0.1
    out = np.empty(n, dtype=object)
    for i in range(n):
        block = f"{chome[i]}-{banchi[i]}-{go[i]}"
        if wide[i]:
            block = block.translate(str.maketrans("0123456789-", "０１２３４５６７８９－"))
        tail = f"\u3000{BUILDINGS[bname[i]]}{room[i]}" if building[i] else ""
        out[i] = f"{city}{towns[i]}{block}{tail}"
    return out
