"""What the city tells families and publishes, generated from the catalogue (never by hand).

* :func:`notice_context` / :func:`notice_html`: the notice to pupils and parents (お知らせ) —
  which items are used, from which department, for what, who can see what (``portal/roles.toml``),
  how long they are kept, whom to ask. One template (``portal/templates/portal/notice.html``)
  serves both ``toda notice`` (a self-contained printable page) and the portal's ``/notice/``.
* :func:`register_rows` / :func:`register_html` / :func:`register_csv`: the register of
  personal-information files (個人情報ファイル簿, 個人情報の保護に関する法律 第75条), one file
  per personal source, with the items 第74条第1項 names.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from toda_platform.catalogue import PURPOSES, Column, SourceSpec

PORTAL = Path(__file__).resolve().parents[2] / "portal"
TEMPLATES = PORTAL / "templates"
NOTICE_TEMPLATE = "portal/notice.html"
REGISTER_TEMPLATE = "portal/register.html"
NOTICE_CSS = PORTAL / "static" / "portal" / "notice.css"

RIGHTS = ("ご自身やお子さんの情報について、開示・訂正・利用停止を請求できます（個人情報の保護に関する"
          "法律 第76条・第90条・第98条）。学校または上記の窓口にお申し出ください。")


def _city(city=None):
    """The city the documents speak for: the one given, else the home's (``Paths.city``)."""
    if city is not None:
        return city
    from toda_platform.settings import paths

    return paths().city


def contact(city=None) -> dict:
    city = _city(city)
    return {
        "office": f"{city.board_ja} {city.office_ja}",
        "where": f"{city.title_ja}役所内（窓口・電話・メール。連絡先は市のホームページと学校だよりに掲載します）",
        "rights": RIGHTS,
    }
PURPOSE_TEXT = {
    "early_support": "欠席の増え方や学校生活の様子から、学校に来にくくなりつつある児童生徒に早めに気づき、"
                     "ケース会議で支援を話し合うために使います。判断するのは必ず先生や支援の担当者で、"
                     "システムが自動的に何かを決めることはありません。",
    "school_improvement": "学校ごとの傾向（学校カルテ）をまとめ、学校の取組の改善に使います。"
                          "学校単位の集計で、10人未満の数字は表示しません。",
    "support_evaluation": "行った支援がその後の出席にどう結びついたかを確かめ、支援の方法を見直すために使います。",
    "hardship_screening": "経済的な困りごとや養育上の心配に早く気づき、福祉の支援につなぐきっかけにします。"
                          "判断するのは必ず担当者です。",
}
SCOPE_TEXT = {"all": "市内すべての学校", "school": "自分の学校の児童生徒のみ",
              "agency": "自分が担当する支援の対象となった児童生徒のみ", "none": "児童生徒の情報は見られません"}
NOT_PERSONAL = "個人情報ファイルに該当しない（学校単位の集計）"


def item_label(col: Column) -> str:
    """One recorded item as families read it."""
    if col.pii == "pseudonymise":
        return f"{col.header}（仮の番号に置換）"
    if col.pii == "birth_month":
        return f"{col.header}（年月のみ）"
    if col.pii == "identity":
        return f"{col.header}（名前の台帳に別保管）"
    if col.unmapped == "count":
        return f"{col.header}（決められた区分のみ）"
    return col.header


def recorded_items(spec: SourceSpec) -> list[str]:
    return [item_label(c) for c in spec.columns if c.pii != "drop"]


def not_recorded(spec: SourceSpec) -> list[str]:
    return [c.header for c in spec.columns if c.pii == "drop"]


def record_scope(spec: SourceSpec) -> str:
    if not spec.use.personal:
        return "市立小・中学校（学校単位）"
    if any(c.kind == "resident_number" for c in spec.columns) and not any(
            c.kind == "pupil_number" for c in spec.columns):
        return "市立小・中学校に在籍する児童生徒のうち、乳幼児期に市の記録がある者"
    return "市立小・中学校に在籍する（在籍した）児童生徒"


def _source(spec: SourceSpec) -> dict:
    return {
        "key": spec.key, "title": spec.title_ja, "holder": spec.holder, "cadence": spec.cadence,
        "items": recorded_items(spec), "not_recorded": not_recorded(spec),
        "purposes": [PURPOSES[p] for p in spec.use.purposes], "legal_basis": spec.use.legal_basis,
        "retention": spec.use.retention_ja, "retention_years": spec.use.retention_years,
        "collected_from": spec.use.collected_from, "personal": spec.use.personal,
        "sensitive": spec.use.sensitive,
    }


def _roles() -> list[dict]:
    from portal.roles import roles

    out = []
    for r in roles().values():
        sees = [SCOPE_TEXT.get(r.scope, r.scope)]
        if r.sees_pupils:
            sees.append("氏名も表示" if r.names else "氏名は表示せず仮の番号のみ")
            if r.export_names:
                sees.append("目的を記録したうえで氏名入りの名簿を出力できる（記録が残ります）")
            if r.record_support:
                sees.append("支援の決定を記録できる")
        if r.audit_log:
            sees.append("閲覧の記録（監査ログ）を確認する")
        if r.manage_users:
            sees.append("利用者の管理のみ")
        out.append({"label": r.label, "sees": "、".join(sees)})
    return out


def notice_context(city=None) -> dict:
    city = _city(city)
    sources = [_source(s) for s in city.specs.values()]
    bases: dict[str, list[str]] = {}
    for s in sources:
        if s["personal"]:
            bases.setdefault(s["legal_basis"], []).append(s["title"])
    return {
        "bases": [{"text": text, "sources": titles} for text, titles in bases.items()],
        "organ": city.board_ja,
        "purposes": [{"label": PURPOSES[k], "text": PURPOSE_TEXT[k]} for k in PURPOSES],
        "sources": [s for s in sources if s["personal"]],
        "school_sources": [s for s in sources if not s["personal"]],
        "roles": _roles(),
        "contact": contact(city),
    }


def _engine():
    from django.template import Engine

    # the portal's own template, outside Django's settings: {% load static %} parses, and is only
    # rendered by the portal (here the stylesheet is inlined)
    return Engine(dirs=[str(TEMPLATES)], autoescape=True,
                  libraries={"static": "django.templatetags.static"})


def _render(template: str, context: dict) -> str:
    from django.template import Context

    return _engine().get_template(template).render(Context(context))


def notice_html(*, inline_css: bool = True, city=None) -> str:
    """The notice as one HTML page; ``inline_css`` for a file opened or printed on its own (the
    portal links the stylesheet instead: its CSP allows no inline style)."""
    css = NOTICE_CSS.read_text(encoding="utf-8") if inline_css else ""
    return _render(NOTICE_TEMPLATE, {**notice_context(city), "inline_css": css})


# --- the register of personal-information files -------------------------------------------------

REGISTER_FIELDS = (
    ("name", "個人情報ファイルの名称"),
    ("organ", "行政機関等の名称"),
    ("office", "個人情報ファイルが利用に供される事務をつかさどる組織の名称"),
    ("purpose", "個人情報ファイルの利用目的"),
    ("items", "記録項目"),
    ("scope", "記録範囲"),
    ("collection", "記録情報の収集方法"),
    ("sensitive", "要配慮個人情報が含まれるときは、その旨"),
    ("recipients", "記録情報の経常的提供先"),
    ("retention", "保有期間"),
    ("legal_basis", "利用の根拠"),
    ("requests", "開示請求等を受理する組織の名称"),
    ("kind", "区分"),
    ("source_key", "データ名（システム）"),
)


def register_rows(city=None) -> list[dict]:
    """One row per source (personal sources are the register's files; school-level figures are
    listed as not being personal-information files), in catalogue order."""
    city = _city(city)
    office = contact(city)["office"]
    rows = []
    for spec in city.specs.values():
        use = spec.use
        rows.append({
            "name": f"{spec.title_ja}（教育総合データベース）",
            "organ": city.board_ja,
            "office": f"{office}（原データの保有：{spec.holder}）",
            "purpose": "、".join(PURPOSES[p] for p in use.purposes),
            "items": "、".join(recorded_items(spec)),
            "scope": record_scope(spec),
            "collection": use.collected_from,
            "sensitive": "含む（健康診断等の結果）" if use.sensitive else "含まない",
            "recipients": "なし（教育委員会及び市立学校の内部で利用）",
            "retention": use.retention_ja,
            "legal_basis": use.legal_basis,
            "requests": office,
            "kind": "個人情報ファイル" if use.personal else NOT_PERSONAL,
            "source_key": spec.key,
        })
    return rows


def register_csv(city=None) -> str:
    """The register as CSV (UTF-8 with BOM, so that Excel opens it in Japanese)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow([label for _, label in REGISTER_FIELDS])
    for row in register_rows(city):
        w.writerow([row[k] for k, _ in REGISTER_FIELDS])
    return "\ufeff" + buf.getvalue()


def register_html(city=None) -> str:
    city = _city(city)
    rows = register_rows(city)
    return _render(REGISTER_TEMPLATE, {
        "organ": city.board_ja,
        "inline_css": NOTICE_CSS.read_text(encoding="utf-8"),
        "files": [[(label, r[k]) for k, label in REGISTER_FIELDS] for r in rows if r["kind"] != NOT_PERSONAL],
        "others": [r for r in rows if r["kind"] == NOT_PERSONAL],
    })


def write_documents(out_dir: Path, *, notice: bool = True, register: bool = True, city=None) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    if notice:
        p = out_dir / "notice.html"
        p.write_text(notice_html(city=city), encoding="utf-8")
        written.append(p)
    if register:
        p = out_dir / "register.html"
        p.write_text(register_html(city), encoding="utf-8")
        q = out_dir / "register.csv"
        q.write_text(register_csv(city), encoding="utf-8", newline="")
        written += [p, q]
    return written


CHROMIUM_ENV = "TODA_CHROMIUM"


def print_pdf(html: Path, pdf: Path, *, chromium: str | None = None, timeout: float = 120) -> Path:
    """A4 PDF of a written page, printed by a local Chromium (headless; nothing is fetched)."""
    import os
    import shutil
    import subprocess

    browser = chromium or os.environ.get(CHROMIUM_ENV) or shutil.which("chromium") or shutil.which("chromium-browser")
    if not browser or not Path(browser).exists():
        raise FileNotFoundError(f"no Chromium to print with: install it or set {CHROMIUM_ENV}")
    pdf.unlink(missing_ok=True)
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-pdf-header-footer",
                    f"--print-to-pdf={pdf}", html.resolve().as_uri()],
                   check=True, capture_output=True, timeout=timeout)
    if not pdf.exists():
        raise RuntimeError(f"Chromium did not write {pdf}")
    return pdf
