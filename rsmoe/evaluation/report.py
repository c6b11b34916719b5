"""The evaluation report: one self-contained HTML file with scores, VQA, grounding, loss curves and samples.

    data = ReportData(preset="tiny", experts=["theme", "objects", "relations"], strategy="two-stage",
                      date="2025-11-24", scores={"stage2": captions.score(...)}, vqa=vqa.accuracy(rows), ...)
    write_report(Path("reports/report.html"), data)

Self-contained: the CSS is inline and every picture (sample thumbnails, the loss plot) is a
base64 PNG data URI, so nothing is fetched when the file is opened, and no file path is written
into it: the file can be attached to a CI run or mailed as is. This module computes what the report
shows (formatted numbers, best values, captions cut into spans, pictures); the markup is the jinja2
template templates/report.html.j2, rendered with autoescape on, so every text is HTML-escaped.

The inputs are dataclasses of plain, JSON-able types; the dict-valued fields take exactly what
`captions.score` / `captions.score_aspects` / `vqa.accuracy` / `grounding.aggregate` return.

Samples. The generated caption is shown with its aspect segments tinted in the colours of the
paper's figures: orange = theme, purple = objects, green = relations. The figures have no colour
of their own for absolute positions (the 3-expert model writes them with relations), so
positions get a teal green that a 4-expert run can tell apart from relations. Other segment
labels (the 2-expert model's "details", a 1-expert "caption", "stage1") are grey. Spans are
half-open character ranges [start, end) into `Sample.caption`:

- `Segment(label, start, end)`: one aspect / expert segment. Segments must not overlap; text
  between them (the spaces that join them) is shown untinted. `segment_spans(caption, segments)`
  finds them for the model's `Caption.segments` ({expert: text}, joined in expert order).
- `Mark(start, end, kind, note)`: a grounding error, `kind` a `grounding` status (see `MARK_STYLES`),
  `note` the tooltip. Marks may overlap segments and each other. `grounding_marks(g)` builds them
  from a `Grounding.to_dict()`; `sample_from_prediction` builds a whole `Sample` from a row of
  `reports/predictions.jsonl`.
"""
from __future__ import annotations

import base64
import csv
import functools
import io
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup
from PIL import Image

from rsmoe.evaluation.captions import METRICS
from rsmoe.evaluation.grounding import annotated

# label -> (strong, tint): the tint fills the segment's background, the strong colour underlines
# it and draws the expert's loss curve. Tints are opaque so a screenshot shows them pixel-exact.
ASPECT_COLOURS: dict[str, tuple[str, str]] = {
    "theme": ("#e67e22", "#fde3c4"),  # orange
    "objects": ("#8e44ad", "#ead8f3"),  # purple
    "relations": ("#27a243", "#d2efd9"),  # green
    "positions": ("#138d7c", "#cbece7"),  # teal green: not in the paper's figures, see module doc
}
OTHER_COLOUR = ("#7f8c8d", "#e6e8e8")
ERROR_RED = "#d62728"
PLOT_FACE = "#f3f6fb"  # the loss plot's axes background; used nowhere else, so a test can find the plot
# grounding status -> (CSS text decoration, legend text)
MARK_STYLES: dict[str, tuple[str, str]] = {
    "hallucinated": ("line-through", "named, but not in the annotations"),
    "miscounted": ("underline wavy", "wrong count"),
    "denied": ("underline dotted", "said absent, but present"),
    "vague_mismatch": ("underline dashed", "vague quantity that does not fit"),
}
THUMBNAIL = 256  # px, the longer side of a sample image

@dataclass(frozen=True)
class Segment:
    label: str  # aspect or expert name: theme / objects / positions / relations are coloured, others grey
    start: int  # caption[start:end] is the segment
    end: int


@dataclass(frozen=True)
class Mark:
    start: int  # caption[start:end] is the erroneous phrase
    end: int
    kind: str  # a key of MARK_STYLES (a grounding status)
    note: str = ""  # the tooltip: what is wrong


@dataclass
class Sample:
    name: str  # the image's id or file name, shown above it (never a path)
    reference: str
    caption: str  # the generated caption that the spans index
    segments: list[Segment] = field(default_factory=list)
    marks: list[Mark] = field(default_factory=list)
    missed: list[str] = field(default_factory=list)  # classes present but never named (no span to mark)
    image: Any = None  # a PIL image, an image file (str / Path) or None; embedded as a <=256 px PNG
    others: dict[str, str] = field(default_factory=dict)  # other models' captions, plain: {"stage1": ...}


@dataclass
class ReportData:
    preset: str
    experts: list[str]
    strategy: str
    date: str  # shown as given, e.g. "2025-11-24"
    split: str = "test"
    images: int | None = None  # images scored in the split
    scores: dict[str, dict[str, float]] = field(default_factory=dict)  # model row -> {METRICS, diagnostics}
    # baseline row -> {METRICS, diagnostics} (`rsmoe.evaluation.baselines`); shown under the models
    baselines: dict[str, dict[str, float]] = field(default_factory=dict)
    # model row -> metric -> {margin, best_baseline, ratio} (`rsmoe.evaluation.scoring.margins`)
    margins: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    aspects: dict[str, dict[str, float]] = field(default_factory=dict)  # as captions.score_aspects
    vqa: dict[str, Any] = field(default_factory=dict)  # as vqa.accuracy: per_type, average, overall, n
    grounding: dict[str, Any] = field(default_factory=dict)  # as grounding.aggregate
    losses: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # stage -> rows of <stage>_steps.csv
    samples: list[Sample] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # shown at the end, e.g. captions.SPICE_NOTE


# ---------------------------------------------------------------------------------------------
# Building the inputs


def read_steps(path: Path) -> list[dict[str, str]]:
    """metrics/<stage>_steps.csv (written by training) -> its rows; [] when the file is absent."""
    if not Path(path).is_file():
        return []
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def segment_spans(caption: str, segments: Mapping[str, str] | Sequence[tuple[str, str]]) -> list[Segment]:
    """{label: text} (or (label, text) pairs), in caption order -> their spans in `caption`.

    Each non-empty text is looked up after the previous one, so any joining ("a. b" by the model's
    " ".join) works; a text not found raises, naming the label.
    """
    pairs = segments.items() if isinstance(segments, Mapping) else segments
    out, pos = [], 0
    for label, text in pairs:
        text = (text or "").strip()
        if not text:
            continue
        start = caption.find(text, pos)
        if start < 0:
            raise ValueError(f"segment {label!r} ({text[:40]!r}) is not in the caption after character {pos}; "
                             "pass the segments in caption order, as the caption was joined from them")
        out.append(Segment(label, start, start + len(text)))
        pos = start + len(text)
    return out


def grounding_marks(g: Mapping[str, Any]) -> list[Mark]:
    """A `Grounding.to_dict()` (or its JSON) -> a Mark for every phrase of a wrong claim."""
    marks = []
    for category, r in g["classes"].items():
        m, status, true = r["mention"], r["status"], r["true_count"]
        if m is None or status not in MARK_STYLES:
            continue
        if status == "hallucinated":
            note, spans = f"{category}: named, but the annotations have none", m["spans"]
        elif status == "denied":
            note, spans = f"{category}: said to be absent, but the annotations have {true}", m["spans"]
        elif status == "miscounted":
            note, spans = f"{category}: \u201c{m['text']}\u201d, but the annotations have {true}", [m["span"]]
        else:
            note, spans = f"{category}: \u201c{m['quantifier']}\u201d does not fit the true count {true}", [m["span"]]
        marks += [Mark(int(a), int(b), status, note) for a, b in spans]
    return sorted(marks, key=lambda k: (k.start, k.end))


def sample_from_prediction(row: Mapping[str, Any], image: Any = None) -> Sample:
    """A row of reports/predictions.jsonl (filename, reference, caption, segments, grounding,
    optional stage1) -> a Sample; `image` as `Sample.image`."""
    g = row.get("grounding")
    return Sample(name=Path(row["filename"]).name, reference=row["reference"], caption=row["caption"],
                  segments=segment_spans(row["caption"], row.get("segments") or {}),
                  marks=grounding_marks(g) if g else [], missed=list(g["missed"]) if g else [], image=image,
                  others={"stage1": row["stage1"]} if row.get("stage1") else {})


# ---------------------------------------------------------------------------------------------
# Pictures


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _thumbnail(image: Any, name: str) -> str:
    if isinstance(image, (str, Path)):
        if not Path(image).is_file():
            raise FileNotFoundError(f"sample {name!r}: image file {image} not found; pass an existing file, "
                                    "a PIL image or None")
        with Image.open(image) as im:
            im = im.convert("RGB")
    else:
        im = image.convert("RGB")  # a copy: thumbnail() below works in place
    im.thumbnail((THUMBNAIL, THUMBNAIL))
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return _data_uri(buf.getvalue())


def _series(rows: list[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    """(steps, values) of one CSV column; empty cells (a column a row lacks) are skipped."""
    pts = [(float(r["step"]), float(r[key])) for r in rows if r.get(key) not in (None, "")]
    return [s for s, _ in pts], [v for _, v in pts]


def _smooth(values: list[float], window: int) -> list[float]:
    """Trailing running mean: per-step losses are too noisy to compare experts by eye."""
    acc = list(itertools.accumulate(values, initial=0.0))
    return [(acc[i + 1] - acc[max(0, i + 1 - window)]) / min(i + 1, window) for i in range(len(values))]


def loss_plot(losses: Mapping[str, list[dict[str, Any]]]) -> bytes | None:
    """One panel per stage: total loss (black) and each `loss_<expert>` column in its aspect colour.
    Long runs (>200 steps) show the raw total faintly under running means. None when there are no rows."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    stages = [(name, rows) for name, rows in losses.items() if rows]
    if not stages:
        return None
    fig = Figure(figsize=(10, 3.4), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    greys = itertools.cycle(["#7f8c8d", "#34495e", "#b07d62", "#5d6d7e"])
    for i, (name, rows) in enumerate(stages):
        ax = fig.add_subplot(1, len(stages), i + 1, facecolor=PLOT_FACE)
        window = max(1, len(rows) // 50) if len(rows) > 200 else 1
        steps, loss = _series(rows, "loss")
        if window > 1:
            ax.plot(steps, loss, color="#222222", alpha=0.2, lw=0.8)
        ax.plot(steps, _smooth(loss, window), color="#222222", lw=1.8, label="loss", zorder=3)
        for key in [k for k in rows[0] if k.startswith("loss_")]:
            expert = key.removeprefix("loss_")
            colour = ASPECT_COLOURS[expert][0] if expert in ASPECT_COLOURS else next(greys)
            s, v = _series(rows, key)
            ax.plot(s, _smooth(v, window), color=colour, lw=1.4, label=expert)
        ax.set_title(name + (f" (running mean of {window} steps)" if window > 1 else ""), fontsize=10)
        ax.set_xlabel("step")
        if i == 0:
            ax.set_ylabel("loss")
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
        ax.legend(fontsize=8, frameon=False)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()


# ---------------------------------------------------------------------------------------------
# HTML


def _num(v: Any, unit: str = "") -> str:
    if v is None or v == "":
        return "\u2013"
    return str(v) if isinstance(v, int) else f"{float(v):.2f}{unit}"


def _seg_class(label: str) -> str:
    """The CSS class suffix of a segment label: its aspect colour, or grey ("other")."""
    return label if label in ASPECT_COLOURS else "other"


# diagnostics columns of the scores table: (key, header, unit)
DIAGNOSTICS: tuple[tuple[str, str, str], ...] = (
    ("distinct", "distinct", " %"), ("theme_accuracy", "theme acc.", " %"), ("repetition", "repeats", " %"),
    ("words", "words", ""), ("CIDEr-nolen", "CIDEr w/o length penalty", ""), ("length_gap", "length gap", ""))
BASELINE_LABELS = {
    "random_caption": "random train caption (mean of 3 seeds)",
    "scene_caption": "random train caption of the scene type",
    "blind": "blind: the model on another crop's image",
    "retrieval_oracle": "oracle: closest-count train caption (reads test annotations)",
}


def _scores(scores: Mapping[str, Mapping[str, float]], baselines: Mapping[str, Mapping[str, float]],
            margins: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> dict[str, Any]:
    """Model rows (best model value bold), each model's margin over the best non-oracle baseline,
    then the baselines (italic): every score beside what no model would get."""
    def values(s: Mapping[str, Any]) -> list[str]:
        return [_num(s.get(m)) for m in METRICS] + [_num(s.get(k), unit) for k, _, unit in DIAGNOSTICS]

    best = {m: max(v) for m in METRICS  # the best model per metric
            if len(scores) > 1 and (v := [s[m] for s in scores.values() if s.get(m) is not None])}
    return {
        "head": ["model", *METRICS, *(h for _, h, _ in DIAGNOSTICS)],
        "models": [(name, values(s), {j for j, m in enumerate(METRICS) if m in best and s.get(m) == best[m]})
                   for name, s in scores.items()],
        "margins": [(name, [{"cls": "pos" if d["margin"] > 0 else "neg", "over": d["best_baseline"],
                             "margin": f"{d['margin']:+.2f}"} if d else None for d in map(per_metric.get, METRICS)])
                    for name, per_metric in margins.items()],
        "diagnostics": len(DIAGNOSTICS),  # empty cells that end a margin row
        "baselines": [(BASELINE_LABELS.get(name, name), values(s)) for name, s in baselines.items()],
    }


def _aspects(aspects: Mapping[str, Mapping[str, float]]) -> dict[str, Any]:
    return {"head": ["aspect", *METRICS, "n"],
            "rows": [(a, [_num(s.get(m)) for m in METRICS] + [_num(s.get("n"))]) for a, s in aspects.items()]}


def _vqa(vqa: Mapping[str, Any]) -> dict[str, Any]:
    """Accuracy per type beside the majority-answer baseline (the train split's most frequent answer)."""
    base = vqa.get("baseline") or {}
    per_base, answers = base.get("per_type", {}), base.get("answers", {})
    return {
        "types": [(t, _num(r.get("accuracy"), " %"), _num(per_base.get(t, {}).get("accuracy"), " %"), answers.get(t),
                   _num(r.get("n"))) for t, r in vqa.get("per_type", {}).items()],
        "average": [_num(vqa.get("average"), " %"), _num(base.get("average"), " %"), ""],
        "overall": [_num(vqa.get("overall"), " %"), _num(base.get("overall"), " %"), _num(vqa.get("n"))],
    }


def _grounding(g: Mapping[str, Any]) -> dict[str, Any]:
    pct = [("count_accuracy", "count accuracy"), ("vague_accuracy", "vague accuracy"),
           ("hallucination_rate", "hallucination rate"), ("miss_rate", "miss rate")]
    totals = [("counted", "counts checked"), ("mentioned", "classes named"), ("present", "classes present"),
              ("images", "images")]
    cols = ["present", "mentioned", "hallucinated", "missed", "denied", "counted", "count_correct"]
    return {"head": [h for _, h in pct + totals],
            "row": [_num(g.get(k), " %") for k, _ in pct] + [_num(g.get(k)) for k, _ in totals],
            "class_head": ["class", *cols],
            "classes": [(c, [_num(r.get(k)) for k in cols]) for c, r in (g.get("per_class") or {}).items()]}


def _check_spans(s: Sample) -> None:
    n = len(s.caption)
    for sp in [*s.segments, *s.marks]:
        if not 0 <= sp.start <= sp.end <= n:
            raise ValueError(f"sample {s.name!r}: {sp} lies outside the caption (length {n}); "
                             "spans are [start, end) character offsets into Sample.caption")
    for a, b in zip(sorted(s.segments, key=lambda x: x.start), sorted(s.segments, key=lambda x: x.start)[1:]):
        if b.start < a.end:
            raise ValueError(f"sample {s.name!r}: segments {a} and {b} overlap; each character belongs to one "
                             "segment at most")
    for m in s.marks:
        if m.kind not in MARK_STYLES:
            raise ValueError(f"sample {s.name!r}: mark kind {m.kind!r} unknown; use one of {list(MARK_STYLES)}")


def caption_html(s: Sample) -> Markup:
    """The caption with segment tints and error marks, cut at every span boundary. Markup (a str)
    whose text is escaped by Markup.format / Markup.join, so the template embeds it as is."""
    _check_spans(s)
    cuts = sorted({0, len(s.caption), *(x for sp in [*s.segments, *s.marks] for x in (sp.start, sp.end))})
    pieces: list[tuple[Segment | None, tuple[Mark, ...], str]] = []
    for a, b in zip(cuts, cuts[1:]):
        seg = next((g for g in s.segments if g.start <= a < g.end), None)
        marks = tuple(m for m in s.marks if m.start <= a < m.end)
        if pieces and pieces[-1][:2] == (seg, marks):
            pieces[-1] = (seg, marks, pieces[-1][2] + s.caption[a:b])
        else:
            pieces.append((seg, marks, s.caption[a:b]))
    out = []
    for seg, group in itertools.groupby(pieces, key=lambda p: p[0]):
        inner = Markup("").join(
            Markup('<mark class="err {}" title="{}">{}</mark>').format(
                " ".join(f"err-{m.kind}" for m in marks), "\n".join(m.note or m.kind for m in marks), text)
            if marks else text for _, marks, text in group)
        out.append(inner if seg is None else Markup('<span class="seg seg-{}" title="{}">{}</span>').format(
            _seg_class(seg.label), seg.label, inner))
    return Markup("").join(out)


def _css() -> str:
    segs = "".join(f".seg-{a}{{background:{t};border-color:{c}}}" for a, (c, t) in
                   [*ASPECT_COLOURS.items(), ("other", OTHER_COLOUR)])
    marks = "".join(f".err-{k}{{text-decoration:{d} {ERROR_RED} 2px}}" for k, (d, _) in MARK_STYLES.items())
    return (
        'body{font:15px/1.5 "Liberation Sans",Arial,sans-serif;color:#222;max-width:1100px;margin:20px auto;'
        "padding:0 16px}h1{font-size:22px;margin:0}h2{font-size:18px;margin:26px 0 8px;padding-bottom:3px;"
        "border-bottom:1px solid #ddd}.meta{color:#666;margin:2px 0 0}"
        "table{border-collapse:collapse;font-size:14px;margin:4px 0}th,td{padding:3px 10px;text-align:right;"
        "border-bottom:1px solid #eee}td{white-space:nowrap}th:first-child,td:first-child{text-align:left;white-space:normal}"
        "thead th{background:#fafafa;border-bottom:2px solid #ccc}details{margin:6px 0;font-size:14px}"
        ".plot{max-width:100%;display:block}.legend{font-size:13px;margin:0 0 6px}"
        ".legend>span{display:inline-block;margin:0 16px 4px 0}"
        ".sw{display:inline-block;width:26px;height:12px;margin-right:5px;vertical-align:-1px;"
        "border-bottom:3px solid}.sample{display:flex;gap:18px;padding:12px 0;border-bottom:1px solid #eee}"
        ".thumb{width:256px;max-height:256px;object-fit:contain;flex:none;align-self:flex-start}"
        ".noimg{height:120px;background:#f4f4f4;color:#999;display:flex;align-items:center;justify-content:center}"
        ".texts{flex:1}.texts p{margin:0 0 8px}.name{font-weight:600;margin-bottom:4px}"
        ".label{color:#777;font-size:11px;text-transform:uppercase;letter-spacing:.05em}"
        ".caption{line-height:1.9}.seg{padding:2px 0;border-bottom:3px solid;box-decoration-break:clone;"
        "-webkit-box-decoration-break:clone}"
        f"mark.err{{background:none;color:{ERROR_RED};font-weight:600;cursor:help;text-underline-offset:3px}}"
        f".missed{{color:{ERROR_RED};font-size:13px}}.notes{{color:#666;font-size:13px}}"
        ".baseline{color:#555}.pos{color:#1e7b34}.neg{color:#b42318}.ans{color:#888;font-size:12px}" + segs + marks)


def report_html(data: ReportData) -> str:
    """The whole report as one HTML string."""
    title = (f"RS-MoE evaluation \u00b7 preset {data.preset} \u00b7 {len(data.experts)} experts "
             f"({', '.join(data.experts)}) \u00b7 {data.strategy} \u00b7 {data.date}")
    png = loss_plot(data.losses)
    used = {g.label for s in data.samples for g in s.segments}
    return _template().render(
        data=data, title=title, css=Markup(_css()),  # the CSS is ours and must not be escaped
        scores=_scores(data.scores, data.baselines, data.margins) if data.scores else None,
        aspects=_aspects(data.aspects) if data.aspects else None,
        vqa=_vqa(data.vqa) if data.vqa else None,
        grounding=_grounding(data.grounding) if annotated(data.grounding) else None,
        plot=_data_uri(png) if png else None,
        legend_labels=[*ASPECT_COLOURS, *sorted(used - set(ASPECT_COLOURS))],
        mark_legend=[(k, text) for k, (_, text) in MARK_STYLES.items()],
        samples=[(s, None if s.image is None else _thumbnail(s.image, s.name), caption_html(s))
                 for s in data.samples])


@functools.cache
def _template() -> jinja2.Template:
    """templates/report.html.j2, from one Environment that escapes every value it is given."""
    env = jinja2.Environment(loader=jinja2.PackageLoader("rsmoe.evaluation", "templates"), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                             keep_trailing_newline=True)
    env.filters["seg_class"] = _seg_class
    return env.get_template("report.html.j2")


def write_report(out: Path, data: ReportData) -> Path:
    """Write the report to `out` (its folder is created) and return `out`."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report_html(data), encoding="utf-8")
    return out
