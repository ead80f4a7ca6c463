"""Data quality for the staging layer: Great Expectations suites generated from the catalogue,
the domain rules kept beside them, whole-table checks and Data Docs.

Pure Python (no Dagster): ``toda_platform.ingest`` calls ``validate_file`` on each landed file
before its rows are applied, and the Dagster asset checks call ``validate_table``.
"""

from quality.model import ERROR, WARN, Failure, FileContext, FileValidation, TableValidation
from quality.suites import build_suite, check_batch, check_file, file_level_ok, read_typed, validate_file
from quality.table import check_table, validate_table
from quality.docs import render_data_docs
from quality.context import References, export_date, file_context, load_references, previous_volumes

__all__ = [
    "ERROR", "WARN", "Failure", "FileContext", "FileValidation", "TableValidation",
    "build_suite", "check_batch", "check_file", "file_level_ok", "validate_file", "read_typed",
    "check_table", "validate_table", "render_data_docs",
    "References", "load_references", "previous_volumes", "export_date", "file_context",
]
