"""The report's results, in the order a paper gives them: the classifier, the boxes derived from its maps
(the analogue of Table 4.4 of Pinciroli Vago 2021), the best threshold of each localisation measure, the
curves, deletion and insertion, and the maps over test paintings by class and method.

Each section reads only what a stage wrote and says every number in words, with the direction of "better"
taken from the metric declarations. A section whose files are missing or damaged is replaced by one sentence
naming the file (raise :class:`Skip`), so a report builds from any run. Tables and figures are numbered as
in a paper; full tables are linked as CSV, never dumped.
"""

from __future__ import annotations

import csv
import html
import json
import math
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from iconolens.evaluate.declarations import (
    DETECTION_METRICS,
    FAITHFULNESS_METRICS,
    LOCALISATION_METRICS,
    MetricDeclaration,
)
from iconolens.run import RunDirectory

LEVELS = ("figure", "attribute")
LEVEL_WORDS = {"figure": "figure boxes (whole figures)", "attribute": "attribute boxes (iconographic symbols)"}
_LOCALISATION = re.compile(r"^localisation_(figure|attribute)(?:_(.+))?$")
_FAITHFULNESS = re.compile(r"^faithfulness(?:_(.+))?$")


class Skip(Exception):
    """A section that cannot be shown; the message is the sentence printed in its place."""


@dataclass
class Page:
    """What sections share: the run, the folder links are relative to, the numbering of tables and figures,
    and the files already shown (the sections for the rest leave them out)."""

    run: RunDirectory
    tables: int = 0
    figures: int = 0
    shown: set[Path] = field(default_factory=set)

    @property
    def base(self) -> Path:
        return self.run.report_dir

    def next_table(self) -> int:
        self.tables += 1
        return self.tables

    def next_figure(self) -> int:
        self.figures += 1
        return self.figures

    def name(self, path: Path) -> str:
        """``path`` as the reader finds it in the run (relative to the run folder when inside it)."""
        try:
            return Path(path).resolve().relative_to(self.run.root.resolve()).as_posix()
        except ValueError:
            return str(path)

    def link(self, path: Path, text: str | None = None) -> str:
        self.shown.add(Path(path))
        href = html.escape(os.path.relpath(path, self.base))
        return f'<a href="{href}">{html.escape(text or Path(path).name)}</a>'

    def figure(self, path: Path, caption: str, css: str = "") -> str:
        """A numbered figure; ``caption`` is HTML (already escaped)."""
        self.shown.add(Path(path))
        href = html.escape(os.path.relpath(path, self.base))
        number = self.next_figure()
        kind = f' class="{css}"' if css else ""
        return (f'<figure{kind}><a href="{href}"><img src="{href}" loading="lazy" alt="Figure {number}"></a>'
                f"<figcaption><strong>Figure {number}.</strong> {caption}</figcaption></figure>")

    def caption(self, text: str) -> str:
        """A numbered table caption; ``text`` is HTML (already escaped)."""
        return f"<p class='caption'><strong>Table {self.next_table()}.</strong> {text}</p>"


def error_sentence(run: RunDirectory, exc: Exception) -> str:
    """An error as one sentence naming its file relative to the run, as the report names files."""
    path, problem = getattr(exc, "path", None), getattr(exc, "problem", None)
    if path is None or problem is None:
        return str(exc)
    try:
        path = Path(path).resolve().relative_to(run.root.resolve())
    except ValueError:
        pass
    return f"{Path(path).as_posix()}: {problem}"


def esc(value: Any) -> str:
    return html.escape(str(value))


def note(text: str) -> str:
    return f'<p class="note">{text}</p>'


def code(page: Page, path: Path) -> str:
    return f"<code>{esc(page.name(path))}</code>"


def as_number(value: Any) -> float | None:
    """A finite float from a JSON or CSV value, else None ("", "n/a", NaN, text)."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def number_text(value: Any, digits: int = 3) -> str:
    number = as_number(value)
    return "n/a" if number is None else f"{number:.{digits}f}"


def digits_of(metric: MetricDeclaration) -> int:
    """Percentages get two decimals, shares and areas three."""
    return 2 if metric.value_range[1] > 1 else 3


def heading_of(metric: MetricDeclaration) -> str:
    return f"{esc(metric.title)} <small>({'higher' if metric.higher_is_better else 'lower'} is better)</small>"


def definitions(metrics: Iterable[MetricDeclaration]) -> str:
    items = "".join(f"<dt>{esc(m.title)}</dt><dd>{esc(m.measures)}; "
                    f"{'higher' if m.higher_is_better else 'lower'} is better.</dd>" for m in metrics)
    return f"<dl class='definitions'>{items}</dl>"


def best_values(metric: MetricDeclaration, values: Iterable[Any]) -> float | None:
    finite = [v for v in (as_number(x) for x in values) if v is not None]
    if len(set(finite)) < 2:  # one value, or all alike: nothing stands out
        return None
    return max(finite) if metric.higher_is_better else min(finite)


def read_json(page: Page, path: Path, command: str) -> Any:
    """The JSON document at ``path``, or Skip with a sentence naming it (and the command that writes it)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise Skip(f"{code(page, path)} is missing ({esc(command)} writes it)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise Skip(f"{code(page, path)} is damaged ({esc(type(exc).__name__)}: {esc(exc)})") from None


def read_csv(page: Page, path: Path, required: Sequence[str]) -> list[dict[str, str]]:
    """The rows of a CSV file with the ``required`` columns, or Skip with a sentence naming it."""
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            rows = list(reader)
            columns = reader.fieldnames or []
    except FileNotFoundError:
        raise Skip(f"{code(page, path)} is missing") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise Skip(f"{code(page, path)} is damaged ({esc(type(exc).__name__)}: {esc(exc)})") from None
    missing = [c for c in required if c not in columns]
    if missing:
        raise Skip(f"{code(page, path)} is damaged (no column {esc(', '.join(missing))})")
    return rows


def split_words(split: str | None) -> str:
    return f"{split} split" if split else "all images with maps"


# --- 1. The classifier -------------------------------------------------------------------------------------

CLASSIFIER_SCORES: tuple[tuple[str, str], ...] = (
    ("accuracy", "accuracy: share of images whose highest-scoring class is their class"),
    ("exact_match", "exact-match accuracy: share of images whose predicted label set is exactly their label set"),
    ("top5_accuracy", "top-5 accuracy: share of images whose class is among the five highest-scoring"),
    ("macro_f1", "mean F1 over classes (macro F1)"),
    ("macro_precision", "mean precision over classes"),
    ("macro_recall", "mean recall over classes"),
    ("roc_auc", "mean ROC-AUC over classes (each class against the rest)"),
    ("pr_auc", "mean average precision (area under the precision-recall curve) over classes"),
)
MODE_WORDS = {
    "off-the-shelf": "off the shelf (frozen ImageNet features, a new final layer trained)",
    "fine-tune": "by fine-tuning its ImageNet weights",
    "scratch": "from scratch (random initial weights)",
}
TASK_WORDS = {
    "multiclass": "one class per image (softmax over classes)",
    "multilabel": "any number of labels per image (one sigmoid per class, thresholds tuned on the validation split)",
}


def _classifier_settings(meta: dict[str, Any]) -> tuple[str, list[tuple[str, str]]]:
    """The sentence introducing the classifier and its settings as (setting in words, value) rows."""
    classes = [str(c) for c in meta.get("classes") or []]
    backbone, mode, task = meta.get("backbone", "?"), meta.get("mode"), meta.get("task")
    size = meta.get("input_size")
    sentence = (f"The classifier is a <strong>{esc(backbone)}</strong> network trained "
                f"{esc(MODE_WORDS.get(mode, mode or 'in an unrecorded mode'))} on {len(classes)} classes, "
                f"with images resized to {esc(size)} &times; {esc(size)} pixels; it predicts "
                f"{esc(TASK_WORDS.get(task, task or 'classes'))}.")
    shown = ", ".join(classes[:30]) + (f", … ({len(classes) - 30} more in model/meta.json)" if len(classes) > 30 else "")
    rows = [("backbone (network architecture)", str(backbone)), ("training mode", str(mode)),
            ("task", str(task)), ("input size (pixels, square)", str(size)),
            ("classes", f"{len(classes)}: {shown}")]
    extra = meta.get("metrics") if isinstance(meta.get("metrics"), dict) else {}
    if extra.get("head"):
        rows.append(("final layer (head)", str(extra["head"])))
    if extra.get("best_epoch"):
        rows.append(("epoch kept (lowest validation loss)", str(extra["best_epoch"])))
    return sentence, rows


def _pairs_table(rows: Sequence[tuple[str, str]], first: str, second: str, css: str = "") -> str:
    kind = f' class="{css}"' if css else ""
    body = "".join(f"<tr><td>{esc(k)}</td><td>{esc(v)}</td></tr>" for k, v in rows)
    return f"<table{kind}><tr><th>{esc(first)}</th><th>{esc(second)}</th></tr>{body}</table>"


def _score_rows(scores: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(key, measure in words, value) for every score the file holds."""
    classes = scores.get("classes") or []
    out = []
    for key, words in CLASSIFIER_SCORES:
        if key == "top5_accuracy" and len(classes) <= 5:
            continue  # every class is among the top five: always 1
        if as_number(scores.get(key)) is not None:
            out.append((key, words, number_text(scores[key])))
    f2 = scores.get("f2_per_example")
    if isinstance(f2, dict):
        for threshold, value in f2.items():
            words = (f"mean F2 per image, labels predicted where the probability exceeds {threshold} "
                     "(the iMet measure; recall weighs four times precision)")
            out.append((f"f2@{threshold}", words, number_text(value)))
    return out


def _per_class(page: Page, scores: dict[str, Any], split: str) -> str:
    """Per-class scores as a CSV beside the report, shown folded when short enough to read."""
    from iconolens.report.html import MAX_TABLE_ROWS, csv_to_html
    from iconolens.report.tables import write_csv

    per_class = scores.get("per_class")
    if not isinstance(per_class, dict) or not per_class:
        return ""
    columns = {"class": "class", "precision": "precision", "recall": "recall", "f1": "F1",
               "support": f"{split} images with the class", "roc_auc": "ROC-AUC", "pr_auc": "average precision"}
    rows = [{"class": name, **{k: ("" if not isinstance(v, dict) or v.get(k) is None else v.get(k))
                               for k in list(columns)[1:]}} for name, v in per_class.items()]
    path = write_csv(page.base / f"classifier_{split}_per_class.csv", [{columns[k]: r[k] for k in columns} for r in rows],
                     list(columns.values()))
    link = page.link(path)
    if len(rows) > MAX_TABLE_ROWS:
        return f"<p>Scores of each of the {len(rows)} classes: {link}.</p>"
    return (f"<details><summary>Scores of each class on the {esc(split)} split ({link})</summary>"
            f"{csv_to_html(path)}</details>")


def classifier_section(page: Page) -> str:
    run = page.run
    meta_path = run.model_dir / "meta.json"
    test_path = run.metrics_dir / "classifier_test.json"
    val_path = run.metrics_dir / "classifier_val.json"
    if not meta_path.is_file() and not test_path.is_file() and not val_path.is_file():
        raise Skip(f"no classifier in this run ({code(page, meta_path)} is missing; <code>iconolens train</code> "
                   "writes it)")
    parts = ["<h2>Classifier</h2>"]
    if meta_path.is_file():
        try:
            meta = read_json(page, meta_path, "iconolens train")
            if not isinstance(meta, dict):
                raise Skip(f"{code(page, meta_path)} is damaged (not a JSON object)")
            sentence, rows = _classifier_settings(meta)
            parts.append(f"<p>{sentence}</p>")
            parts.append(page.caption(f"Settings of the classifier ({page.link(meta_path)})."))
            parts.append(_pairs_table(rows, "setting", "value", "settings"))
        except Skip as skip:
            parts.append(note(f"Settings left out: {skip}."))
    else:
        parts.append(note(f"Settings left out: {code(page, meta_path)} is missing (a random-forest head keeps no "
                          "checkpoint)."))
    split, path = ("test", test_path) if test_path.is_file() else ("val", val_path)
    if not path.is_file():
        parts.append(note(f"No scores yet: {code(page, test_path)} is missing "
                          "(<code>iconolens evaluate-classifier --split test</code> writes it)."))
        return "\n".join(parts)
    if split == "val":
        parts.append(note(f"No test-split scores yet ({code(page, test_path)} is missing; "
                          "<code>iconolens evaluate-classifier --split test</code> writes it): these are the "
                          "validation scores written during training."))
    try:
        scores = read_json(page, path, "iconolens evaluate-classifier")
        if not isinstance(scores, dict):
            raise Skip(f"{code(page, path)} is damaged (not a JSON object)")
        count = scores.get("n", "?")
        rows = _score_rows(scores)
        parts.append(page.caption(f"Scores of the classifier on the {esc(count)} images of the {esc(split)} split "
                                  f"({page.link(path)})."))
        body = "".join(f'<tr data-score="{esc(k)}"><td>{esc(w)}</td><td>{v}</td></tr>' for k, w, v in rows)
        parts.append(f"<table class='scores'><tr><th>measure</th><th>value</th></tr>{body}</table>")
        skipped = scores.get("skipped_images")
        if isinstance(skipped, list) and skipped:
            parts.append(f"<p>{len(skipped)} images of the split could not be read and were not scored "
                         f"(listed in {page.link(path)}).</p>")
        parts.append(_per_class(page, scores, split))
    except Skip as skip:
        parts.append(note(f"Scores left out: {skip}."))
    figures = []
    confusion = run.report_dir / f"confusion_{split}.png"
    if confusion.is_file():
        figures.append(page.figure(confusion, f"Confusion matrix of the classifier on the {esc(split)} split: one "
                                   "row per true class, one column per predicted class; each cell shows how many "
                                   "images, its colour the share of the row."))
    curve = run.report_dir / "learning_curve.png"
    if curve.is_file():
        figures.append(page.figure(curve, "Learning curve: training and validation loss per epoch (left) and the "
                                   "validation scores (right); the dashed line marks the epoch kept."))
    parts.extend(figures)
    return "\n".join(p for p in parts if p)


# --- 2. Boxes derived from maps (Table 4.4) ----------------------------------------------------------------

def _box_rows(page: Page, level: str, notes: list[str]) -> dict[str, dict[str, Any]]:
    """method -> scores at ``level``: the rows of boxes_<level>.csv, then any method only its JSON records."""
    metrics = page.run.metrics_dir
    rows: dict[str, dict[str, Any]] = {}
    table = metrics / f"boxes_{level}.csv"
    if table.is_file():
        try:
            for row in read_csv(page, table, ("method",)):
                rows[row["method"]] = row
        except Skip as skip:
            notes.append(f"{skip}")
    for path in sorted(metrics.glob(f"boxes_{level}_*.json")):
        try:
            scores = json.loads(path.read_text(encoding="utf-8"))["scores"]
            method = str(scores["method"])
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
            notes.append(f"{code(page, path)} is damaged ({esc(type(exc).__name__)}: {esc(exc)}) and left out")
            continue
        if method not in rows and isinstance(scores, dict):
            rows[method] = scores
    return rows


def box_table_section(page: Page) -> str:
    metrics = page.run.metrics_dir
    levels = [lv for lv in LEVELS
              if (metrics / f"boxes_{lv}.csv").is_file() or any(metrics.glob(f"boxes_{lv}_*.json"))]
    if not levels:
        raise Skip(f"no boxes derived from maps in this run ({code(page, metrics / 'boxes_figure.csv')} and "
                   f"{code(page, metrics / 'boxes_attribute.csv')} are missing; <code>iconolens boxes</code> writes them)")
    notes: list[str] = []
    by_level = {lv: _box_rows(page, lv, notes) for lv in levels}
    by_level = {lv: rows for lv, rows in by_level.items() if rows}
    if not by_level:
        raise Skip("; ".join(notes))
    methods = list(dict.fromkeys(m for rows in by_level.values() for m in rows))
    best = {(lv, m.key): best_values(m, (r.get(m.key) for r in rows.values()))
            for lv, rows in by_level.items() for m in DETECTION_METRICS}
    head1 = "".join(f'<th colspan="{len(DETECTION_METRICS)}">{esc(LEVEL_WORDS[lv].capitalize())}</th>' for lv in by_level)
    head2 = "".join(f"<th>{heading_of(m)}</th>" for _ in by_level for m in DETECTION_METRICS)
    body = []
    for method in methods:
        cells = []
        for lv, rows in by_level.items():
            row = rows.get(method, {})
            for metric in DETECTION_METRICS:
                text = number_text(row.get(metric.key), digits_of(metric))
                value = as_number(row.get(metric.key))
                if value is not None and best[(lv, metric.key)] == value:
                    text = f"<strong>{text}</strong>"
                cells.append(f'<td data-level="{lv}" data-metric="{metric.key}">{text}</td>')
        body.append(f'<tr data-method="{esc(method)}"><td>{esc(method)}</td>{"".join(cells)}</tr>')
    links = []
    for lv in by_level:
        table = metrics / f"boxes_{lv}.csv"
        if table.is_file():
            links.append(page.link(table))
        markdown = metrics / f"boxes_{lv}.md"
        if markdown.is_file():
            page.shown.add(markdown)
    caption = page.caption(
        "Boxes derived from each method's maps, scored as a detector is scored against the expert boxes "
        "(the analogue of Table 4.4 of Pinciroli Vago, 2021); one row per method, the best value of each column "
        "in bold, n/a where a method has no boxes at that level.")
    parts = ["<h2>Boxes derived from the maps</h2>", caption,
             f"<table class='results'><tr><th rowspan='2'>Method</th>{head1}</tr><tr>{head2}</tr>{''.join(body)}</table>",
             definitions(DETECTION_METRICS)]
    if links:
        parts.append(f"<p>Full tables, with CorLoc, recall at IoU 0.5, mAP with difficult boxes ignored, boxes per "
                     f"image and the counts behind each score: {', '.join(links)}.</p>")
    for lv in by_level:
        histogram = page.run.report_dir / f"boxes_{lv}_iou_histogram.png"
        if histogram.is_file():
            parts.append(page.figure(histogram, (
                f"IoU of each derived {esc(lv)} box with the best-matching expert box of its class and image: share "
                "of each method's boxes per IoU bin (a box above 0.5 counts as found)."), css="curve"))
    parts.extend(note(f"{n}.") for n in notes)
    return "\n".join(parts)


# --- 3 and 4. Localisation: best thresholds and curves ----------------------------------------------------

@dataclass(frozen=True)
class LocalisationStem:
    """One ``iconolens evaluate`` output: its file stem, box level and split."""

    stem: str
    level: str
    split: str | None

    @property
    def words(self) -> str:
        return f"{LEVEL_WORDS[self.level]}, {split_words(self.split)}"


def localisation_stems(run: RunDirectory) -> list[LocalisationStem]:
    """Every localisation result of the run, from its metrics files or, failing those, its curves."""
    names = set()
    if run.metrics_dir.is_dir():
        for path in run.metrics_dir.glob("localisation_*"):
            if path.suffix in (".json", ".csv"):
                names.add(path.stem.removesuffix("_peaks"))
    if run.report_dir.is_dir():
        for path in run.report_dir.glob("localisation_*.png"):
            for metric in LOCALISATION_METRICS:
                if path.stem.endswith(f"_{metric.key}"):
                    names.add(path.stem.removesuffix(f"_{metric.key}"))
    stems = []
    for name in names:
        match = _LOCALISATION.match(name)
        if match:
            stems.append(LocalisationStem(name, match.group(1), match.group(2)))
    return sorted(stems, key=lambda s: (LEVELS.index(s.level), s.split or ""))


def _peaks(page: Page, stem: LocalisationStem, notes: list[str]) -> tuple[dict, dict, list]:
    """(method -> metric -> (best, threshold), method -> maps measured, thresholds) of one result."""
    metrics = page.run.metrics_dir
    peaks: dict[str, dict[str, tuple[Any, Any]]] = {}
    counts: dict[str, Any] = {}
    thresholds: list = []
    document = None
    json_path = metrics / f"{stem.stem}.json"
    if json_path.is_file():
        try:
            document = read_json(page, json_path, "iconolens evaluate")
            counts = {m: c.get("maps") for m, c in (document.get("counts") or {}).items() if isinstance(c, dict)}
            thresholds = list(document.get("thresholds") or [])
        except Skip as skip:
            notes.append(str(skip))
        except AttributeError:
            notes.append(f"{code(page, json_path)} is damaged (not a JSON object)")
            document = None
    csv_path = metrics / f"{stem.stem}_peaks.csv"
    if csv_path.is_file():
        try:
            for row in read_csv(page, csv_path, ("method", "metric", "best", "at_threshold")):
                peaks.setdefault(row["method"], {})[row["metric"]] = (row["best"], row["at_threshold"])
            page.link(csv_path)
        except Skip as skip:
            notes.append(str(skip))
    if not peaks and isinstance(document, dict):
        try:
            for method, by_metric in (document.get("peaks") or {}).items():
                for key, peak in by_metric.items():
                    peaks.setdefault(method, {})[key] = (peak.get("value"), peak.get("threshold"))
        except (AttributeError, TypeError):
            notes.append(f"the peaks of {code(page, json_path)} are damaged")
    return peaks, counts, thresholds


def localisation_peaks_section(page: Page) -> str:
    stems = [s for s in localisation_stems(page.run)
             if (page.run.metrics_dir / f"{s.stem}.json").is_file()
             or (page.run.metrics_dir / f"{s.stem}_peaks.csv").is_file()]
    if not stems:
        missing = page.run.metrics_dir / "localisation_<level>_peaks.csv"
        raise Skip(f"no localisation measures in this run ({code(page, missing)} is missing; "
                   "<code>iconolens evaluate</code> writes it)")
    parts = ["<h2>Best threshold of each localisation measure</h2>"]
    notes: list[str] = []
    shown_any = False
    for stem in stems:
        peaks, counts, thresholds = _peaks(page, stem, notes)
        if not peaks:
            continue
        shown_any = True
        grid = (f"t = {float(thresholds[0]):.2f}, {float(thresholds[1]):.2f}, …, {float(thresholds[-1]):.2f}"
                if len(thresholds) > 2 and all(as_number(t) is not None for t in thresholds) else "the thresholds t")
        best = {m.key: best_values(m, (peaks[x].get(m.key, (None,))[0] for x in peaks)) for m in LOCALISATION_METRICS}
        head = "".join(f"<th>{heading_of(m)}</th>" for m in LOCALISATION_METRICS)
        body = []
        for method, by_metric in peaks.items():
            cells = []
            for metric in LOCALISATION_METRICS:
                value, at = by_metric.get(metric.key, (None, None))
                if as_number(value) is None:
                    cells.append(f'<td data-metric="{metric.key}">n/a</td>')
                    continue
                text = f"{number_text(value)} at t = {number_text(at, 2)}"
                if best[metric.key] == as_number(value):
                    text = f"<strong>{text}</strong>"
                cells.append(f'<td data-metric="{metric.key}">{text}</td>')
            maps = counts.get(method)
            cells.append(f"<td>{esc(maps) if maps is not None else 'n/a'}</td>")
            body.append(f'<tr data-method="{esc(method)}"><td>{esc(method)}</td>{"".join(cells)}</tr>')
        files = [p for p in (page.run.metrics_dir / f"{stem.stem}_peaks.csv", page.run.metrics_dir / f"{stem.stem}.csv")
                 if p.is_file()]
        sources = ", ".join(page.link(p) for p in files)
        parts.append(f'<div data-result="{esc(stem.stem)}">')
        parts.append(page.caption(
            f"Localisation against the expert {esc(stem.words)}: for each method and measure, the best value over "
            f"the foreground thresholds {esc(grid)} (foreground: normalised map &ge; t), written "
            f"&ldquo;value at threshold t&rdquo;; the best method of each column in bold"
            + (f" ({sources}; the second file holds every class at every threshold)" if sources else "") + "."))
        parts.append(f"<table class='results'><tr><th>Method</th>{head}<th>maps measured</th></tr>{''.join(body)}</table>")
        parts.append("</div>")
    if not shown_any:
        raise Skip("; ".join(notes) or "no method has a localisation result")
    parts.append(definitions(LOCALISATION_METRICS))
    parts.extend(note(f"{n}.") for n in notes)
    return "\n".join(parts)


def localisation_curves_section(page: Page) -> str:
    stems = localisation_stems(page.run)
    if not stems:
        missing = page.run.report_dir / f"localisation_<level>_{LOCALISATION_METRICS[0].key}.png"
        raise Skip(f"no localisation curves in this run ({code(page, missing)} is missing; "
                   "<code>iconolens evaluate</code> draws them)")
    parts = ["<h2>Localisation against the threshold</h2>"]
    missing = []
    figures = 0
    for stem in stems:
        for metric in LOCALISATION_METRICS:
            path = page.run.report_dir / f"{stem.stem}_{metric.key}.png"
            if not path.is_file():
                missing.append(path)
                continue
            figures += 1
            parts.append(page.figure(path, (
                f"{esc(metric.title)} against the foreground threshold t (foreground: normalised map &ge; t), "
                f"expert {esc(stem.words)}, one line per method; {'higher' if metric.higher_is_better else 'lower'} "
                f"is better. {esc(metric.title)}: {esc(metric.measures)}."), css="curve"))
    if not figures:
        raise Skip(f"no localisation curves ({code(page, missing[0])} is missing; <code>iconolens evaluate</code> "
                   "draws them)")
    parts.extend(note(f"{code(page, p)} is missing.") for p in missing)
    return "\n".join(parts)


# --- 5. Faithfulness: deletion and insertion --------------------------------------------------------------

def faithfulness_section(page: Page) -> str:
    metrics = page.run.metrics_dir
    paths = {}
    if metrics.is_dir():
        for path in sorted(metrics.glob("faithfulness*")):
            match = _FAITHFULNESS.match(path.stem)
            if match and path.suffix in (".json", ".csv"):
                paths.setdefault(path.stem, match.group(1))
    if not paths:
        raise Skip(f"no deletion or insertion areas in this run ({code(page, metrics / 'faithfulness.json')} is "
                   "missing; <code>iconolens evaluate --faithfulness-images N</code> writes it)")
    parts = ["<h2>Deletion and insertion</h2>"]
    notes: list[str] = []
    shown_any = False
    for stem, split in paths.items():
        json_path, csv_path = metrics / f"{stem}.json", metrics / f"{stem}.csv"
        methods: dict[str, dict[str, Any]] = {}
        document: dict[str, Any] = {}
        if json_path.is_file():
            try:
                loaded = read_json(page, json_path, "iconolens evaluate --faithfulness-images N")
                if not isinstance(loaded, dict) or not isinstance(loaded.get("methods"), dict):
                    raise Skip(f"{code(page, json_path)} is damaged (no \"methods\" object)")
                document = loaded
                methods = {m: r for m, r in loaded["methods"].items() if isinstance(r, dict)}
            except Skip as skip:
                notes.append(str(skip))
        if not methods and csv_path.is_file():
            try:
                methods = {r["method"]: r for r in read_csv(page, csv_path, ("method",))}
            except Skip as skip:
                notes.append(str(skip))
        if not methods:
            continue
        shown_any = True
        best = {m.key: best_values(m, (r.get(m.key) for r in methods.values())) for m in FAITHFULNESS_METRICS}
        head = "".join(f"<th>{heading_of(m)}</th>" for m in FAITHFULNESS_METRICS)
        body = []
        for method, row in methods.items():
            cells = []
            for metric in FAITHFULNESS_METRICS:
                text = number_text(row.get(metric.key))
                if best[metric.key] is not None and best[metric.key] == as_number(row.get(metric.key)):
                    text = f"<strong>{text}</strong>"
                cells.append(f'<td data-metric="{metric.key}">{text}</td>')
            for key in ("pairs", "skipped"):
                value = as_number(row.get(key))
                cells.append(f"<td>{'n/a' if value is None else int(value)}</td>")
            body.append(f'<tr data-method="{esc(method)}"><td>{esc(method)}</td>{"".join(cells)}</tr>')
        images, steps = document.get("images"), document.get("steps")
        where = f"the {split} split" if split else "the run's images"
        how = f"on {where}"
        if as_number(images) is not None and as_number(steps) is not None:
            how = (f"on {int(as_number(images))} images of {where}, in {int(as_number(steps))} steps (each step blurs "
                   f"away or restores 1/{int(as_number(steps))} of the pixels)")
        links = ", ".join(page.link(p) for p in (json_path, csv_path) if p.is_file())
        parts.append(page.caption(
            f"Deletion and insertion areas (Petsiuk et al., 2018) of each method's maps with the run's classifier, "
            f"{esc(how)}, averaged over image-label pairs; the best method of each column in "
            f"bold ({links})."))
        parts.append(f"<table class='results'><tr><th>Method</th>{head}<th>image-label pairs measured</th>"
                     f"<th>pairs skipped</th></tr>{''.join(body)}</table>")
    if not shown_any:
        raise Skip("; ".join(notes))
    parts.append(definitions(FAITHFULNESS_METRICS))
    parts.extend(note(f"{n}.") for n in notes)
    return "\n".join(parts)


# --- 6. Maps over test paintings by class and method ------------------------------------------------------

def class_grid_section(page: Page, per_class: int = 2, side: int = 256) -> str:
    from iconolens.data.dataset_json import load_dataset_json
    from iconolens.errors import IconolensError
    from iconolens.report.class_grid import write_class_grids
    from iconolens.report.method_gallery import stored_methods

    run = page.run
    if not stored_methods(run):
        raise Skip(f"{code(page, run.maps_root)} holds no saliency maps "
                   "(<code>iconolens explain</code> writes them)")
    if not run.dataset_json.is_file():
        raise Skip(f"{code(page, run.dataset_json)} is missing")
    try:
        dataset = load_dataset_json(run.dataset_json)
    except IconolensError as exc:
        raise Skip(f"{code(page, run.dataset_json)} cannot be read "
                   f"({esc(getattr(exc, 'problem', exc))})") from None
    grid = write_class_grids(run, dataset, per_class=per_class, side=side)
    if not grid.sheets:
        raise Skip("no image of <code>dataset.json</code> has stored maps"
                   + "".join(f"; {esc(n)}" for n in grid.notes))
    parts = ["<h2>Maps over test paintings, by class and method</h2>"]
    for sheet in grid.sheets:
        classes = list(dict.fromkeys(c for c, _ in sheet.rows))
        if sheet.level is None:
            boxes = "the run has neither expert nor derived boxes, so none is drawn"
        else:
            files = ", ".join(f"{esc(m)}: {page.link(p)}" for m, p in sheet.derived_files.items())
            boxes = (f"the expert {esc(sheet.level)} boxes of the row's class in red and the {esc(sheet.level)} "
                     f"boxes derived from the column's maps in green"
                     + (f" ({files})" if files else " (no derived boxes at this level)"))
        caption = (f"{esc(', '.join(classes))}: up to {per_class} images of each class (rows; test split first, with "
                   f"the model's probability for the class) under each saliency method (columns). Each cell is the "
                   f"method's map for the row's class over the painting (jet colours: blue cold, red hot), with "
                   f"{boxes}.")
        parts.append(f'<div class="wide">{page.figure(sheet.path, caption, css="grid")}</div>')
    if grid.omitted_classes:
        parts.append(f"<p>{grid.omitted_classes} further classes are not drawn.</p>")
    parts.extend(note(f"{esc(n)}.") for n in dict.fromkeys(grid.notes))
    return "\n".join(parts)


PAPER_SECTIONS: tuple[tuple[str, str, Callable[[Page], str]], ...] = (
    ("classifier", "Classifier", classifier_section),
    ("box-table", "Boxes derived from the maps", box_table_section),
    ("localisation-peaks", "Best threshold of each localisation measure", localisation_peaks_section),
    ("localisation-curves", "Localisation curves", localisation_curves_section),
    ("faithfulness", "Deletion and insertion", faithfulness_section),
    ("class-grid", "Maps over test paintings", class_grid_section),
)
