"""Small helpers over the warehouse's catalogue of tables, shared by retention and erasure."""

from __future__ import annotations

import duckdb

LOG_SCHEMA = "governance"


def base_tables_with(con: duckdb.DuckDBPyConnection, *columns: str,
                     schemas: tuple[str, ...] | None = None) -> list[str]:
    """Qualified names of base tables (not views) holding every one of ``columns``."""
    rows = con.execute(f"""
        SELECT t.table_schema, t.table_name FROM information_schema.tables t
        WHERE t.table_type = 'BASE TABLE' AND t.table_catalog = current_database()
          AND {' AND '.join('EXISTS (SELECT 1 FROM information_schema.columns c WHERE c.table_schema = '
                            't.table_schema AND c.table_name = t.table_name AND c.table_catalog = '
                            't.table_catalog AND c.column_name = ?)' for _ in columns)}
        ORDER BY 1, 2""", list(columns)).fetchall()
    return [f'{s}."{t}"' if not t.isidentifier() else f"{s}.{t}" for s, t in rows
            if schemas is None or s in schemas]


def has_table(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> bool:
    return bool(con.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema = ? "
                            "AND table_name = ?", [schema, table]).fetchone()[0])


def ensure_schema(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {LOG_SCHEMA}")
