"""bench/ingest.py's floor: the least designs it times write every row of the files they read."""

from bench.ingest import floor


def test_the_floor_designs_write_every_row_the_bare_read_reads(tmp_path):
    files = []
    for k, rows in enumerate((3, 5)):
        f = tmp_path / f"出欠_2026-0{k + 4}.csv"
        lines = ["日付,学校コード,学籍番号,出欠,登校形態,理由"]
        lines += [f"2026/0{k + 4}/{d + 1:02d},13001,{10000000 + d:08d},欠席,,風邪" for d in range(rows)]
        f.write_text("\n".join(lines) + "\n", encoding="utf-8")
        files.append(f)
    out = floor(files, tmp_path / "floor.duckdb")
    assert [label[:3] for label, *_ in out] == ["bar", "(a)", "(b)"]
    assert [rows for *_, rows in out] == [8, 8, 8]
    assert all(wall > 0 and cpu >= 0 for _, wall, cpu, _ in out)
