"""Data Docs under ``$TODA_HOME/reports/quality/``.

GX's own site builder reads validation results back from the context's stores and deletes
pages whose results it cannot find there; with an ephemeral context (one per process, results
in memory) every run would wipe the pages of the runs before it. So the site is assembled
here instead, from the same parts:

* each file's validation page is GX's own rendering of its ``ExpectationSuiteValidationResult``
  (``ValidationResultsPageRenderer`` + ``DefaultJinjaPageView``), with our plain-English
  failures added at the top, written to
  ``validations/<source_key>/<file>/<timestamp>/index.html`` beside a ``record.json``;
* whole-table checks are written to ``tables/<source_key>.json`` (the latest run);
* ``index.html`` is rebuilt from every ``record.json`` and table record on disk, so pages from
  earlier runs and other processes stay listed, newest first per source.
"""

from __future__ import annotations

import html
import json
import logging
import os
import re
from pathlib import Path
from typing import Iterable
from urllib.parse import quote

from quality.model import FileValidation, TableValidation

log = logging.getLogger(__name__)
_UNSAFE = re.compile(r"[^\w.\-()（）]+")


def _safe(name: str) -> str:
    """A file name usable as one folder name: no separators, no '..', nothing hidden."""
    stem = _UNSAFE.sub("_", name).strip("._") or "file"
    return stem[:120]


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def render_data_docs(results: Iterable[FileValidation | TableValidation], folder: Path) -> Path:
    """Write pages for these results, rebuild the index over everything in ``folder``, return it."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for result in results:
        if isinstance(result, FileValidation):
            _file_page(result, folder)
        elif isinstance(result, TableValidation):
            record = result.to_dict()
            _write(folder / "tables" / f"{_safe(result.source_key)}.json",
                   json.dumps(record, ensure_ascii=False, indent=1))
        else:
            raise TypeError(f"render_data_docs takes FileValidation or TableValidation, not {type(result).__name__}")
    return _index(folder)


STATIC = Path(__file__).resolve().parent / "static"
# what GX 1.24's page template loads from CDNs -> the vendored file under quality/static/
CDN_FILES = {
    "https://maxcdn.bootstrapcdn.com/bootstrap/4.3.1/css/bootstrap.min.css": "bootstrap/bootstrap.min.css",
    "https://stackpath.bootstrapcdn.com/bootstrap/4.3.1/js/bootstrap.min.js": "bootstrap/bootstrap.min.js",
    "https://cdn.jsdelivr.net/npm/@forevolve/bootstrap-dark@1.1.0/dist/css/bootstrap-prefers-dark.css":
        "bootstrap-dark/bootstrap-prefers-dark.min.css",
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/css/bootstrap-datepicker.min.css":
        "bootstrap-datepicker/bootstrap-datepicker.min.css",
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/js/bootstrap-datepicker.min.js":
        "bootstrap-datepicker/bootstrap-datepicker.min.js",
    "https://cdnjs.cloudflare.com/ajax/libs/font-awesome/6.6.0/css/all.min.css": "fontawesome/css/all.min.css",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.css": "bootstrap-table/bootstrap-table.min.css",
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/bootstrap-table-filter-control.css":
        "bootstrap-table/bootstrap-table-filter-control.min.css",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.js": "bootstrap-table/bootstrap-table.min.js",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/extensions/filter-control/bootstrap-table-filter-control.min.js":
        "bootstrap-table/bootstrap-table-filter-control.min.js",
    "https://cdnjs.cloudflare.com/ajax/libs/popper.js/1.12.9/umd/popper.min.js": "popper/popper.min.js",
    "https://code.jquery.com/jquery-3.7.1.min.js": "jquery/jquery.min.js",
    "https://cdn.jsdelivr.net/npm/vega@5": "vega/vega.min.js",
    "https://cdn.jsdelivr.net/npm/vega-lite@5": "vega/vega-lite.min.js",
    "https://cdn.jsdelivr.net/npm/vega-embed@6": "vega/vega-embed.min.js",
}
_GX_LOGO = re.compile(r"https://great-expectations-web-assets\.s3[^\"']*/logo-long\.png[^\"']*")
# GX links its favicon for a site layout one folder shallower than ours
_GX_FAVICON = re.compile(r"(?:\.\./)+static/images/favicon\.ico")
_RESOURCE = re.compile(r"""(<(?:script|link|img)\b[^>]*?\b(?:src|href)=)(["'])(https?://[^"']*)\2""", re.I)


def _install_static(folder: Path) -> Path:
    """Copy the vendored assets to ``folder/static`` (once per version of them)."""
    import shutil

    target = folder / "static"
    stamp = target / ".vendored"
    version = str(sum(p.stat().st_size for p in STATIC.rglob("*") if p.is_file()))
    if not stamp.exists() or stamp.read_text() != version:
        shutil.copytree(STATIC, target, dirs_exist_ok=True)
        stamp.write_text(version)
    return target


def localise(page_html: str, static_prefix: str) -> str:
    """``page_html`` with every CDN resource (stylesheets, scripts, images) pointing at the
    vendored copy under ``static_prefix``; a resource not known here is dropped (logged), so
    no page ever waits on the internet."""
    page_html = _GX_LOGO.sub(f"{static_prefix}/gx/logo-long.png", page_html)
    page_html = _GX_FAVICON.sub(f"{static_prefix}/gx/favicon.ico", page_html)

    def swap(m: re.Match) -> str:
        url = m.group(3)
        local = CDN_FILES.get(url)
        if local is None:
            log.warning("Data Docs: no local copy of %s; the link is dropped", url)
            return f"{m.group(1)}{m.group(2)}{m.group(2)}"
        return f"{m.group(1)}{m.group(2)}{static_prefix}/{local}{m.group(2)}"

    return _RESOURCE.sub(swap, page_html)


def _file_page(result: FileValidation, folder: Path) -> Path:
    stamp = result.validated_at.strftime("%Y%m%dT%H%M%S%f")
    page_dir = folder / "validations" / _safe(result.source_key) / _safe(result.file_name) / stamp
    page = page_dir / "index.html"
    body = _gx_page(result) if result.gx_result is not None else None
    if body is not None:
        _install_static(folder)
        body = localise(body, os.path.relpath(folder / "static", page_dir).replace(os.sep, "/"))
    summary = _failures_html(result)
    if body is None:
        body = _page(f"{result.source_key} · {result.file_name}", summary + _skipped_html(result.skipped))
    else:
        body = re.sub(r"(<body[^>]*>)", lambda m: m.group(1) + f'<div class="container-fluid" '
                      f'style="padding:1em 2em">{summary}</div>', body, count=1)
    _write(page, body)
    record = result.to_dict()
    record["page"] = page.relative_to(folder).as_posix()
    _write(page_dir / "record.json", json.dumps(record, ensure_ascii=False, indent=1))
    result.docs_page = str(page)
    return page


def _gx_page(result: FileValidation) -> str | None:
    try:
        from great_expectations.render.renderer import ValidationResultsPageRenderer
        from great_expectations.render.view import DefaultJinjaPageView

        document = ValidationResultsPageRenderer().render(result.gx_result)
        return DefaultJinjaPageView().render(document)
    except Exception as e:  # a rendering bug must not lose the record: fall back to our page
        log.warning("GX could not render the page for %s: %s", result.file_name, e)
        return None


def _failures_html(result: FileValidation) -> str:
    status = "passed" if result.passed and not result.failures else (
        "passed with warnings" if result.passed else "REJECTED (error-severity failures)")
    head = (f"<h2>{html.escape(result.file_name)} <small>({html.escape(result.source_key)})</small></h2>"
            f"<p><b>{status}</b> · {result.rows:,} rows · {result.expectations} expectations · "
            f"{result.seconds:.3f} s · {html.escape(result.validated_at.isoformat(timespec='seconds'))} UTC</p>")
    if not result.failures:
        return head
    items = "".join(
        f"<li><b>{html.escape(f.severity)}</b> <code>{html.escape(f.check)}</code> "
        f"({html.escape(f.expectation)}): {html.escape(f.message)}</li>" for f in result.failures)
    return head + f"<ul>{items}</ul>"


def _skipped_html(skipped: list[str]) -> str:
    if not skipped:
        return ""
    return "<p>Not checked:</p><ul>" + "".join(f"<li>{html.escape(s)}</li>" for s in skipped) + "</ul>"


_STYLE = """
body{font-family:system-ui,'Hiragino Sans','Noto Sans JP',sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin-bottom:2em;width:100%}td,th{border:1px solid #ccc;padding:4px 8px;
vertical-align:top;text-align:left}th{background:#f3f3f3}.ok{color:#176f2c}.warn{color:#a86400}
.err{color:#b00020;font-weight:bold}details summary{cursor:pointer}code{font-size:90%}
"""


def _page(title: str, body: str) -> str:
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{_STYLE}</style></head><body>{body}</body></html>")


def _status(record: dict) -> str:
    if not record.get("passed", True):
        return "<span class='err'>rejected</span>"
    if record.get("warnings"):
        return "<span class='warn'>warnings</span>"
    return "<span class='ok'>passed</span>"


def _failure_list(record: dict) -> str:
    failures = record.get("failures") or []
    if not failures:
        return ""
    items = "".join(f"<li><b>{html.escape(f['severity'])}</b> <code>{html.escape(f['check'])}</code>: "
                    f"{html.escape(f['message'])}</li>" for f in failures)
    return f"<details><summary>{len(failures)} finding{'s' if len(failures) != 1 else ''}</summary><ul>{items}</ul></details>"


def _index(folder: Path) -> Path:
    files: dict[str, list[dict]] = {}
    for path in folder.glob("validations/*/*/*/record.json"):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            log.warning("skipping unreadable quality record %s: %s", path, e)
            continue
        files.setdefault(record["source_key"], []).append(record)
    tables: dict[str, dict] = {}
    for path in folder.glob("tables/*.json"):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            log.warning("skipping unreadable table record %s: %s", path, e)
            continue
        tables[record["source_key"]] = record
    parts = ["<h1>Data quality — staging sources</h1>",
             "<p>Each landed file is validated before its rows are applied (GX suite generated from the "
             "catalogue plus the domain rules in <code>quality/rules.py</code>); a file with an "
             "<span class='err'>error</span> finding is quarantined, <span class='warn'>warnings</span> are "
             "recorded and the file applied. Table checks run on the whole staging table.</p>"]
    for key in sorted(set(files) | set(tables)):
        parts.append(f"<h2 id='{html.escape(key)}'>{html.escape(key)}</h2>")
        table = tables.get(key)
        if table:
            parts.append(f"<p>Table check ({html.escape(table['validated_at'])} UTC, {table['rows']:,} rows, "
                         f"{table['seconds']:.2f} s): {_status(table)} — checks: "
                         f"{html.escape(', '.join(table.get('checks', [])))}</p>{_failure_list(table)}")
            if table.get("skipped"):
                parts.append(_skipped_html(table["skipped"]))
        records = sorted(files.get(key, []), key=lambda r: r["validated_at"], reverse=True)
        if records:
            rows = "".join(
                f"<tr><td><a href='{quote(r['page'])}'>{html.escape(r['file_name'])}</a></td>"
                f"<td>{html.escape(r['validated_at'])}</td><td>{r['rows']:,}</td><td>{_status(r)}</td>"
                f"<td>{r['errors']}</td><td>{r['warnings']}</td><td>{r['seconds']:.3f}</td>"
                f"<td>{_failure_list(r)}</td></tr>" for r in records)
            parts.append("<table><tr><th>file</th><th>validated (UTC)</th><th>rows</th><th>outcome</th>"
                         f"<th>errors</th><th>warnings</th><th>s</th><th>findings</th></tr>{rows}</table>")
    index = folder / "index.html"
    _write(index, _page("Data quality", "".join(parts)))
    return index
