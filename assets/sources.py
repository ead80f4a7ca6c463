"""One ``staging/<source_key>`` asset per catalogue spec, built by a single factory."""


import json

import dagster as dg
from dagster_duckdb import DuckDBResource

from resources.toda import TodaHome
from toda_platform.catalogue import CATALOGUE, SourceSpec
from toda_platform.ingest import ingest_source

PREVIEW_ROWS = 5


def staging_key(source_key: str) -> dg.AssetKey:
    return dg.AssetKey(["staging", source_key])


def _column_schema(spec: SourceSpec) -> dg.TableSchema:
    cols = [
        dg.TableColumn(c.staged_name, c.sql_type.lower(), description=" / ".join(c.headers)
                       + (f" — {c.description}" if c.description else ""))
        for c in spec.staged_columns
    ]
    cols += [
        dg.TableColumn("_file_sha256", "varchar", description="the landed file this row came from"),
        dg.TableColumn("_line", "integer", description="line number in that file"),
        dg.TableColumn("known_date", "date", description=spec.known_rule),
    ]
    return dg.TableSchema(columns=cols)


def _description(spec: SourceSpec) -> str:
    dropped = ", ".join(f"{c.header} ({c.name})" for c in spec.dropped_columns) or "none"
    pseudo = ", ".join(c.header for c in spec.columns if c.pii == "pseudonymise") or "none"
    return (
        f"{spec.title_ja} — {spec.description}\n\n"
        f"Holder: {spec.holder}. Grain: {spec.grain}. Cadence: {spec.cadence}.\n\n"
        f"Key: {', '.join(spec.key_columns)}. Knowledge date: {spec.known_rule}.\n\n"
        f"Pseudonymised: {pseudo}. Never read: {dropped}."
    )


def build_staging_asset(spec: SourceSpec) -> dg.AssetsDefinition:
    @dg.asset(
        key=staging_key(spec.key),
        group_name="sources",
        kinds={"duckdb", "csv"},
        description=_description(spec),
        metadata={
            "dagster/column_schema": _column_schema(spec),
            "dagster/table_name": f"staging.{spec.key}",
            "landing_folder": f"landing/{spec.key}/",
            "export_encoding": spec.export.encoding,
        },
        tags={"grain": spec.grain},
    )
    def _staging(context: dg.AssetExecutionContext, toda: TodaHome, warehouse: DuckDBResource):
        with warehouse.get_connection() as con:
            report = ingest_source(con, spec, toda.paths, toda.pseudonym_key(), log=context.log.info)
            preview = con.execute(
                f"SELECT * EXCLUDE (_file_sha256) FROM staging.{spec.key} LIMIT {PREVIEW_ROWS}"
            ).df()
        for f in report.files:
            if f.outcome == "rejected":
                context.log.error(f"{spec.key}: {f.message}")
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": report.table_rows,
                "rows_inserted": report.rows_inserted,
                "rows_deleted": report.rows_deleted,
                "files_applied": report.count("applied"),
                "files_duplicate": report.count("duplicate"),
                "files_quarantined": report.count("rejected"),
                "known_date_from": report.known_from or "",
                "known_date_until": report.known_until or "",
                "rebuilt_from_archive": report.rebuilt,
                "files": dg.MetadataValue.json(
                    [{"file": f.file_name, "outcome": f.outcome, "period": f.period,
                      "rows_kept": f.rows_kept, "rows_dropped": f.drop_reasons,
                      "unknown_headers": f.unknown_headers, "message": f.message}
                     for f in report.files]
                ),
                "preview": dg.MetadataValue.md(preview.to_markdown(index=False)),
            }
        )

    return _staging


staging_assets = [build_staging_asset(spec) for spec in CATALOGUE.values()]
