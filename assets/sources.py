"""One ``staging/<source_key>`` asset per catalogue spec, built by a single factory.

The definitions say what each source means (the catalogue); how the home's city writes it
(headers, values, encoding, layout) is read at run time from its city file (``Paths.city``)."""


import dagster as dg
from dagster_duckdb import DuckDBResource

from assets.metadata import date_text, md_table
from resources.toda import TodaHome
from toda_platform.catalogue import CATALOGUE, SourceSpec
from toda_platform.ingest import ingest_source, personal

PREVIEW_ROWS = 5
REFERENCE_SOURCES = ("school_master", "pupil_registry")


def staging_key(source_key: str) -> dg.AssetKey:
    return dg.AssetKey(["staging", source_key])


def reference_deps(spec: SourceSpec) -> list[dg.AssetKey]:
    """Staged first so that a file's pupils and schools can be checked against them."""
    kinds = {c.kind for c in spec.columns}
    deps = []
    if "school_code" in kinds and spec.key != "school_master":
        deps.append("school_master")
    if kinds & {"pupil_number", "resident_number"} and spec.key != "pupil_registry":
        deps.append("pupil_registry")
    return [staging_key(k) for k in deps]


def _column_schema(spec: SourceSpec) -> dg.TableSchema:
    cols = [
        dg.TableColumn(c.staged_name, c.sql_type.lower(), description=c.description or None)
        for c in spec.staged_columns
    ]
    cols += [
        dg.TableColumn("_file_sha256", "varchar", description="the landed file this row came from"),
        dg.TableColumn("_line", "integer", description="line number in that file"),
        dg.TableColumn("known_date", "date", description=spec.known_rule),
    ]
    return dg.TableSchema(columns=cols)


def _description(spec: SourceSpec) -> str:
    dropped = ", ".join(c.name for c in spec.dropped_columns) or "none"
    pseudo = ", ".join(c.name for c in spec.columns if c.pii == "pseudonymise") or "none"
    return (
        f"{spec.title_ja} — {spec.description}\n\n"
        f"Holder: {spec.holder}. Grain: {spec.grain}. Cadence: {spec.cadence}.\n\n"
        f"Key: {', '.join(spec.key_columns)}. Knowledge date: {spec.known_rule}.\n\n"
        f"Pseudonymised: {pseudo}. Never read: {dropped}."
    )


def build_staging_asset(meaning: SourceSpec) -> dg.AssetsDefinition:
    @dg.asset(
        key=staging_key(meaning.key),
        group_name="sources",
        kinds={"duckdb", "csv"},
        description=_description(meaning),
        metadata={
            "dagster/column_schema": _column_schema(meaning),
            "dagster/table_name": f"staging.{meaning.key}",
            "landing_folder": f"landing/{meaning.key}/",
        },
        tags={"grain": meaning.grain},
        deps=reference_deps(meaning),
    )
    def _staging(context: dg.AssetExecutionContext, toda: TodaHome, warehouse: DuckDBResource):
        import quality

        spec = toda.paths.city.spec(meaning.key)  # as the home's city writes it
        with warehouse.get_connection() as con:
            report = ingest_source(con, spec, toda.paths, toda.pseudonym_key(), log=context.log.info)
            # no personal column in an event: pseudonyms, birth months and hand-typed codes stay out
            hidden = ", ".join(["_file_sha256", *(f'"{c.staged_name}"' for c in spec.staged_columns if personal(c))])
            preview = con.execute(
                f"SELECT * EXCLUDE ({hidden}) FROM staging.{spec.key} LIMIT {PREVIEW_ROWS}"
            ).df()
        docs = quality.render_data_docs(report.validations, toda.paths.reports / "quality")
        for f in report.files:
            if f.outcome == "rejected":
                context.log.error(f"{spec.key}: quarantined {f.message}")
            elif f.outcome == "held":
                context.log.warning(f"{spec.key}: held for a person: {f.message}")
            for w in f.warnings:
                context.log.warning(f"{spec.key}: {w['message']}")
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": report.table_rows,
                "rows_inserted": report.rows_inserted,
                "rows_deleted": report.rows_deleted,
                "files_applied": report.count("applied"),
                "files_duplicate": report.count("duplicate"),
                "files_superseded": report.count("superseded"),
                "files_quarantined": report.count("rejected"),
                "files_held": report.count("held"),
                "rows_set_aside": sum(f.rows_set_aside for f in report.files),
                "skipped": dg.MetadataValue.json(report.skipped[:50]),
                "known_date_from": date_text(report.known_from),
                "known_date_until": date_text(report.known_until),
                "rebuilt_from_archive": report.rebuilt,
                "seconds": round(report.seconds, 2),
                "validation_seconds": round(report.validation_seconds, 2),
                "data_docs": dg.MetadataValue.path(str(docs)),
                "files": dg.MetadataValue.json(
                    [{"file": f.file_name, "outcome": f.outcome, "period": f.period,
                      "superseded_by": f.superseded_by, "rows_set_aside": f.rows_set_aside,
                      "rows_kept": f.rows_kept, "rows_dropped": f.drop_reasons,
                      "unknown_headers": f.unknown_headers, "message": f.message,
                      "errors": [e.get("message") for e in f.errors],
                      "warnings": [w.get("message") for w in f.warnings]}
                     for f in report.files[:200]]
                ),
                "preview": md_table(preview),
            }
        )

    return _staging


def build_staging_checks(spec: SourceSpec) -> list[dg.AssetChecksDefinition]:
    """A blocking whole-table check (ERROR), and a visible one for files held in quarantine (WARN)."""

    @dg.asset_check(
        asset=staging_key(spec.key),
        name="table_valid",
        blocking=True,
        description="Great Expectations rules of the catalogue over the whole table: key unique "
                    "across files, values allowed and in range, every pupil and school known. "
                    "Failing blocks everything downstream.",
    )
    def _table_valid(toda: TodaHome, warehouse: DuckDBResource) -> dg.AssetCheckResult:
        import quality

        with warehouse.get_connection() as con:
            result = quality.check_table(con, toda.paths.city.spec(spec.key))
        quality.render_data_docs([result], toda.paths.reports / "quality")
        return dg.AssetCheckResult(
            passed=result.passed,
            severity=dg.AssetCheckSeverity.ERROR,
            description="; ".join(f.message for f in result.errors[:3]) or None,
            metadata={
                "rows": result.rows,
                "checks_run": ", ".join(result.checks),
                "errors": len(result.errors),
                "warnings": len(result.warnings),
                "failures": dg.MetadataValue.json([f.to_dict() for f in result.failures[:20]]),
                "seconds": round(result.seconds, 2),
            },
        )

    @dg.asset_check(
        asset=staging_key(spec.key),
        name="no_file_in_quarantine",
        description="Files of this source waiting in quarantine. The table keeps its last good "
                    "content, so this warns rather than blocks; fix and re-land the file.",
    )
    def _quarantine(toda: TodaHome) -> dg.AssetCheckResult:
        folder = toda.paths.quarantine / spec.key
        held = sorted(p for p in folder.glob("*") if not p.name.endswith(".reasons.json")) if folder.exists() else []
        return dg.AssetCheckResult(
            passed=not held,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"files": dg.MetadataValue.json([p.name for p in held]),
                      "folder": dg.MetadataValue.path(str(folder))},
        )

    return [_table_valid, _quarantine]


staging_assets = [build_staging_asset(spec) for spec in CATALOGUE.values()]
staging_checks = [check for spec in CATALOGUE.values() for check in build_staging_checks(spec)]
