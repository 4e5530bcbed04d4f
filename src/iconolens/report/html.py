"""A single HTML page that gathers a run's results: first as a paper's results section
(:mod:`iconolens.report.sections`), then the saliency methods, the sanity checks and every table and figure
no section showed.

It only reads what the stages wrote (and draws pictures from it), so it can be rebuilt at any time and never
changes a result. A section whose files are missing or damaged becomes one sentence naming the file.
"""

from __future__ import annotations

import csv
import html
import json
import os
from collections.abc import Callable
from pathlib import Path

from iconolens.atomic import write_text_atomically
from iconolens.errors import IconolensError
from iconolens.run import RunDirectory

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1200px; color: #222; }
h1 { font-weight: 600; } h2 { border-bottom: 1px solid #ddd; padding-bottom: .2rem; margin-top: 2.5rem; }
table { border-collapse: collapse; margin: .5rem 0 1.5rem; font-size: .9rem; }
th, td { border: 1px solid #ccc; padding: .25rem .6rem; text-align: right; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
figure { display: inline-block; margin: .4rem; vertical-align: top; }
figure img { max-width: 360px; border: 1px solid #ddd; }
figcaption { font-size: .8rem; color: #555; max-width: 360px; word-break: break-all; }
figure.curve img, figure.curve figcaption { max-width: 470px; word-break: normal; }
.wide { overflow-x: auto; } figure.grid img { max-width: none; }
figure.grid figcaption { max-width: 1100px; word-break: normal; font-size: .85rem; }
p.caption { margin-bottom: .2rem; } p.note { color: #8a5a00; font-size: .9rem; }
table.results td, table.scores td, table.settings td { white-space: nowrap; }
table.settings td:last-child { white-space: normal; text-align: left; }
dl.definitions { font-size: .85rem; color: #444; } dl.definitions dt { font-weight: 600; margin-top: .3rem; }
dl.definitions dd { margin-left: 1.2rem; }
"""

MAX_TABLE_ROWS = 60


def _number(text: str) -> str:
    try:
        value = float(text)
    except ValueError:
        return html.escape(text)
    if value.is_integer() and abs(value) < 1e12 and "." not in text:
        return str(int(value))
    return f"{value:.3f}"


def csv_to_html(path: Path) -> str:
    """An HTML table of a short CSV file; a long one is not dumped (see ``_table``)."""
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    if not rows:
        return "<p>(empty table)</p>"
    header, body = rows[0], rows[1:]
    parts = ["<table><tr>", *(f"<th>{html.escape(h)}</th>" for h in header), "</tr>"]
    for row in body:
        parts.append("<tr>" + "".join(f"<td>{_number(cell)}</td>" for cell in row) + "</tr>")
    parts.append("</table>")
    return "".join(parts)


def _table(path: Path, base: Path) -> str:
    """A table's heading in words with a link to its CSV, and the table itself when it is short enough to read."""
    rel = html.escape(os.path.relpath(path, base))
    title = html.escape(path.stem.replace("_", " "))
    with path.open(newline="", encoding="utf-8") as handle:
        count = max(0, sum(1 for _ in csv.reader(handle)) - 1)
    heading = f'<h3>{title} <small>(<a href="{rel}">{html.escape(path.name)}</a>)</small></h3>'
    if count > MAX_TABLE_ROWS:
        return f'{heading}<p>{count} rows: too many to read here; open <a href="{rel}">{html.escape(path.name)}</a>.</p>'
    return heading + csv_to_html(path)


def _figures(paths: list[Path], base: Path) -> str:
    items = []
    for path in paths:
        rel = html.escape(os.path.relpath(path, base))
        items.append(f'<figure><a href="{rel}"><img src="{rel}" loading="lazy"></a>'
                     f"<figcaption>{html.escape(path.stem)}</figcaption></figure>")
    return "\n".join(items)


def _section(title: str, folder: Path, base: Path) -> str:
    if not folder.is_dir():
        return ""
    tables = sorted(folder.rglob("*.csv"))
    images = sorted(folder.rglob("*.png"))
    if not tables and not images:
        return ""
    parts = [f"<h2>{html.escape(title)}</h2>"]
    for table in tables:
        parts.append(_table(table, base))
    if images:
        parts.append(_figures(images, base))
    return "\n".join(parts)


def _sanity_section(run: RunDirectory, base: Path) -> str:
    """The parameter randomisation test's tables and curves, under the sentences of flagged methods."""
    section = _section("Sanity checks", run.sanity_dir, base)
    summary = run.sanity_dir / "summary.json"
    if not section or not summary.is_file():
        return section
    try:
        flags = json.loads(summary.read_text(encoding="utf-8")).get("flags", [])
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        flags = []
    if not isinstance(flags, list) or not flags:
        return section
    heading, rest = section.split("\n", 1)
    sentences = "".join(f"<p><strong>{html.escape(str(flag))}.</strong></p>" for flag in flags)
    return f"{heading}\n{sentences}\n{rest}"


def _methods_section(run: RunDirectory, base: Path) -> str:
    """Each saliency method stored in the run, with its settings and how many images it explained, and the
    gallery of all of them on the same paintings."""
    from iconolens.explain.store import MapStore
    from iconolens.report.method_gallery import stored_methods, write_method_gallery

    methods = stored_methods(run)
    if not methods:
        return ""
    rows = []
    for method in methods:
        store = MapStore(run.maps_dir(method))
        try:
            params = store.meta().get("params", {})
        except IconolensError:  # a damaged meta.json must not stop the report
            params = {}
        settings = ", ".join(f"{k}={v}" for k, v in sorted(params.items()))
        count = sum(1 for _ in store.directory.glob("*.npz"))
        rows.append(f"<tr><td>{html.escape(method)}</td><td>{count}</td><td>{html.escape(settings)}</td></tr>")
    table = "<table><tr><th>method</th><th>images</th><th>settings</th></tr>" + "".join(rows) + "</table>"
    try:
        gallery = write_method_gallery(run)
        figure = _figures([gallery], base) if gallery else ""
    except IconolensError as exc:  # the table above still holds
        from iconolens.report.sections import error_sentence

        figure = f'<p class="note">The gallery of all methods is left out: {html.escape(error_sentence(run, exc))}.</p>'
    return f"<h2>Saliency methods</h2>{table}\n{figure}"


def _unshown(page, folders: list[Path], pattern: str) -> list[Path]:
    """Files matching ``pattern`` under ``folders`` that no section above showed (the grid's sheets excepted)."""
    from iconolens.report.class_grid import GRID_FOLDER

    grid = page.base / GRID_FOLDER
    return [p for folder in folders if folder.is_dir() for p in sorted(folder.rglob(pattern))
            if p not in page.shown and grid not in p.parents]


def _other_tables(page, folders: list[Path]) -> str:
    """The CSV files no section above showed, each under its name with a link (dumped only when short)."""
    tables = _unshown(page, folders, "*.csv")
    if not tables:
        return ""
    return "<h2>Other tables</h2>\n" + "\n".join(_table(p, page.base) for p in tables)


def _other_figures(page, folders: list[Path]) -> str:
    """The PNG files no section above showed (overlays, histograms, ...)."""
    images = _unshown(page, folders, "*.png")
    if not images:
        return ""
    return "<h2>Other figures</h2>\n" + _figures(images, page.base)


def _problems_section(run: RunDirectory) -> str:
    """The files of the collection that could not be used (unreadable, corrupt, too large), with the reason."""
    try:
        problems = json.loads(run.dataset_json.read_text(encoding="utf-8")).get("problems", [])
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
        return ""
    if not isinstance(problems, list) or not problems:
        return ""
    rows = [f"<tr><td>{html.escape(str(p.get('path', '')))}</td><td>{html.escape(str(p.get('message', '')))}</td></tr>"
            for p in problems[:MAX_TABLE_ROWS] if isinstance(p, dict)]
    more = (f"<p>and {len(problems) - MAX_TABLE_ROWS} more, listed under <code>problems</code> in "
            f"<code>dataset.json</code>.</p>" if len(problems) > MAX_TABLE_ROWS else "")
    return (f"<h2>Images left out</h2><p>{len(problems)} file(s) of the collection could not be used and are in "
            "no result above:</p><table><tr><th>file</th><th>problem</th></tr>" + "".join(rows) + f"</table>{more}")


def _guarded(title: str, build: Callable[[], str]) -> tuple[str, bool]:
    """A section's HTML and whether it has content; a section that fails becomes one sentence, never a
    traceback, so one damaged file costs its section only."""
    from iconolens.report.sections import Skip, note

    try:
        text = build()
    except Skip as skip:
        return note(f"<strong>{html.escape(title)}</strong>: {skip}."), False
    except Exception as exc:  # noqa: BLE001 - the page must build from whatever the run holds
        return note(f"<strong>{html.escape(title)}</strong> could not be built ({html.escape(type(exc).__name__)}: "
                    f"{html.escape(str(exc))})."), False
    return text, bool(text)


def write_run_report(run_root: str | Path, title: str = "iconolens report") -> Path:
    """Write ``RUN/report/index.html``, the run's results in the order of a paper's results section, then the
    rest of its tables and figures; returns its path."""
    from iconolens.report.sections import PAPER_SECTIONS, Page

    run = RunDirectory(run_root)
    report = run.report_dir
    report.mkdir(parents=True, exist_ok=True)
    page = Page(run)
    parts, found = [], False
    rest = [
        ("problems", "Images left out", lambda: _problems_section(run)),
        ("methods", "Saliency methods", lambda: _methods_section(run, report)),
        ("sanity", "Sanity checks", lambda: _sanity_section(run, report)),
        ("other-tables", "Other tables",
         lambda: _other_tables(page, [run.model_dir, run.metrics_dir, run.boxes_dir, report])),
        ("other-figures", "Other figures",
         lambda: _other_figures(page, [run.model_dir, run.metrics_dir, run.boxes_dir, report])),
    ]
    sections = [(key, name, (lambda build=build: build(page))) for key, name, build in PAPER_SECTIONS] + rest
    for key, name, build in sections:
        text, content = _guarded(name, build)
        found = found or content
        if text:
            parts.append(f'<section id="{key}">\n{text}\n</section>' if content else text)
    if not found:
        parts.insert(0, "<p>This run has no results yet.</p>")
    body = "\n".join(parts)
    page_text = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
                 f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
                 f"<p>Run directory: <code>{html.escape(str(run.root.resolve()))}</code>. Every number below is read "
                 f"from the file linked beside it; rebuilding this page changes no result.</p>{body}</body></html>\n")
    return write_text_atomically(report / "index.html", page_text)
