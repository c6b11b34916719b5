"""The evaluation report: HTML content (tables, spans, escaping, self-containment) and, with
Chromium, a screenshot that shows the paper's aspect colours, the error marks and the loss plot."""
import base64
import csv
import io
import re
from html.parser import HTMLParser

import numpy as np
import pytest
from PIL import Image

from chromium import ChromiumNotFound, render_png, require_chromium
from rsmoe.evaluation import report
from rsmoe.evaluation.captions import METRICS
from rsmoe.evaluation.grounding import aggregate, ground
from rsmoe.evaluation.report import (ASPECT_COLOURS, PLOT_FACE, Mark, ReportData, Sample, Segment,
                                     caption_html, grounding_marks, sample_from_prediction,
                                     segment_spans, write_report)

DATA_URI = re.compile(r"data:image/png;base64,([A-Za-z0-9+/=]+)")
SEGMENTS = {  # the model's Caption.segments for a 4-expert run, joined with " " in expert order
    "theme": "This is an aerial image of an airport.",
    "objects": "There are three planes and a ship.",
    "positions": "In the top left of the image there is a terminal.",
    "relations": "The planes are parked next to the terminal.",
}
CAPTION = " ".join(SEGMENTS.values())
OBJECTS = [{"category": "plane", "truncated": False, "difficult": 0}] * 2  # 2 planes, no ship


def scores(base):
    return {m: base + i for i, m in enumerate(METRICS)}


def steps(n, experts):
    """Rows as csv.DictReader gives them (strings), like metrics/<stage>_steps.csv."""
    rows = []
    for s in range(1, n + 1):
        row = {"step": str(s), "loss": f"{3.0 / s ** 0.3:.4f}", "lr": "0.0001"}
        row |= {f"loss_{e}": f"{(2.0 + k) / s ** 0.3:.4f}" for k, e in enumerate(experts)}
        rows.append(row)
    return rows


def grey_image(size=(512, 384)):
    """Grey only, so it cannot add aspect-tint pixels to a screenshot."""
    x = np.linspace(40, 220, size[0], dtype=np.uint8)
    return Image.fromarray(np.repeat(np.tile(x, (size[1], 1))[..., None], 3, axis=2))


@pytest.fixture
def data(tmp_path):
    png = tmp_path / "P0001__1024__0___0.png"
    grey_image((300, 600)).save(png)
    g = ground(CAPTION, OBJECTS).to_dict()
    row = {"filename": png.name, "reference": "An airport with two planes.", "caption": CAPTION,
           "segments": SEGMENTS, "grounding": g, "stage1": "An airport."}
    tricky = "Cars <script>alert(1)</script> & \"quoted\" 'text'."
    return ReportData(
        preset="tiny", experts=list(SEGMENTS), strategy="two-stage", date="2025-11-24", images=120,
        scores={"stage2": scores(10.0), "stage1": scores(5.0)},
        aspects={a: {**scores(20.0), "n": 7, "missing": 0} for a in SEGMENTS},
        vqa={"per_type": {"presence": {"accuracy": 75.0, "n": 4}, "quantity": {"accuracy": 50.0, "n": 2}},
             "average": 62.5, "overall": 66.67, "n": 6},
        grounding=aggregate([g]),
        losses={"stage1": steps(40, []), "stage2": steps(60, list(SEGMENTS))},
        samples=[sample_from_prediction(row, image=png),
                 Sample(name="pil.png", reference=tricky, caption=tricky, image=grey_image(),
                        segments=[Segment("objects", 0, len(tricky))], others={"stage1": tricky})],
        notes=["SPICE is not computed <offline>"],
    )


@pytest.fixture
def html(tmp_path, data):
    return write_report(tmp_path / "out" / "report.html", data).read_text(encoding="utf-8")


# ---------------------------------------------------------------------------------------------
# Inputs


def test_segment_spans_index_the_joined_caption():
    spans = segment_spans(CAPTION, SEGMENTS)
    assert [s.label for s in spans] == list(SEGMENTS)
    assert [CAPTION[s.start:s.end] for s in spans] == list(SEGMENTS.values())
    assert segment_spans("a. b.", [("theme", "a."), ("objects", ""), ("relations", "b.")]) == [
        Segment("theme", 0, 2), Segment("relations", 3, 5)]
    with pytest.raises(ValueError, match="'objects'.*caption order"):
        segment_spans("a. b.", [("theme", "b."), ("objects", "a.")])


def test_grounding_marks_point_at_the_wrong_phrases():
    marks = grounding_marks(ground(CAPTION, OBJECTS).to_dict())
    assert [(m.kind, CAPTION[m.start:m.end]) for m in marks] == [("miscounted", "three planes"),
                                                               ("hallucinated", "a ship")]
    assert "annotations have 2" in marks[0].note and "ship" in marks[1].note
    assert grounding_marks(ground("There are two planes.", OBJECTS).to_dict()) == []


# ---------------------------------------------------------------------------------------------
# HTML content


def test_title_and_tables(html):
    title = re.search(r"<h1>(.*?)</h1>", html).group(1)
    for part in ("tiny", "4 experts", "theme, objects, positions, relations", "two-stage", "2025-11-24"):
        assert part in title
    assert "split test \u00b7 120 images" in html
    for head in (*METRICS, "stage1", "stage2", "presence", "quantity", "62.50 %", "66.67 %",
                 "count accuracy", "hallucination rate", "miss rate", "counts checked"):
        assert re.search(rf">(<[^>]+>)*{re.escape(head)}(<[^>]+>)*<", html), head  # a whole cell or header
    assert "<td><strong>16.00</strong></td>" in html  # stage2's CIDEr beats stage1's
    g = aggregate([ground(CAPTION, OBJECTS)])
    assert f"<td>{g['count_accuracy']:.2f} %</td>" in html and f"<td>{g['counted']}</td>" in html


def test_caption_spans_and_marks(html):
    marks = grounding_marks(ground(CAPTION, OBJECTS).to_dict())
    s = Sample("x", "ref", CAPTION, segment_spans(CAPTION, SEGMENTS), marks)
    out = caption_html(s)
    assert re.sub(r"<[^>]+>", "", out) == CAPTION  # nothing lost or added
    theme = re.search(r'<span class="seg seg-theme" title="theme">(.*?)</span>', out).group(1)
    assert theme == SEGMENTS["theme"]
    objects = re.search(r'<span class="seg seg-objects" title="objects">(.*?)</span>', out).group(1)
    assert re.search(r'<mark class="err err-miscounted" title="plane: [^"]*annotations have 2">three planes</mark>',
                     objects)
    assert '<mark class="err err-hallucinated" title="ship: named, but the annotations have none">a ship</mark>' \
        in objects
    for label in ("positions", "relations"):
        assert f'class="seg seg-{label}"' in out
    assert caption_html(Sample("x", "", "abc", [Segment("details", 0, 3)])).startswith('<span class="seg seg-other"')
    assert 'class="seg seg-theme"' in html and "err-hallucinated" in html


def test_a_mark_across_a_segment_boundary_is_split():
    s = Sample("x", "", "ab cd", [Segment("theme", 0, 2), Segment("objects", 3, 5)], [Mark(1, 4, "denied", "n")])
    assert caption_html(s) == ('<span class="seg seg-theme" title="theme">a<mark class="err err-denied" title="n">b'
                               '</mark></span><mark class="err err-denied" title="n"> </mark><span class="seg '
                               'seg-objects" title="objects"><mark class="err err-denied" title="n">c</mark>d</span>')


@pytest.mark.parametrize("sample, problem", [
    (Sample("s1", "", "abc", [Segment("theme", 0, 2), Segment("objects", 1, 3)]), "overlap"),
    (Sample("s1", "", "abc", [], [Mark(2, 9, "hallucinated")]), "outside the caption"),
    (Sample("s1", "", "abc", [], [Mark(0, 1, "typo")]), "mark kind 'typo' unknown"),
])
def test_bad_spans_are_named(sample, problem):
    with pytest.raises(ValueError, match=f"sample 's1'.*{problem}"):
        caption_html(sample)


def test_text_is_escaped(html):
    assert "<script>" not in html
    # quotes as jinja2's autoescape (markupsafe) writes them: &#34; &#39; (html.escape wrote &quot; &#x27;)
    assert "Cars &lt;script&gt;alert(1)&lt;/script&gt; &amp; &#34;quoted&#34; &#39;text&#39;." in html
    assert "SPICE is not computed &lt;offline&gt;" in html


HOSTILE = "<script>alert(1)</script>\" onmouseover=\"alert(2)\" '&"


class Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.attrs = set(), set()

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        self.attrs |= {name for name, _ in attrs}


def test_hostile_names_and_texts_cannot_inject_markup():
    """Every string of the inputs lands escaped, in text and in attributes alike."""
    esc = "&lt;script&gt;alert(1)&lt;/script&gt;&#34; onmouseover=&#34;alert(2)&#34; &#39;&amp;"
    data = ReportData(
        preset=HOSTILE, experts=[HOSTILE], strategy=HOSTILE, date=HOSTILE, split=HOSTILE,
        scores={HOSTILE: scores(1.0), "stage1": scores(2.0)}, baselines={HOSTILE: scores(0.5)},
        margins={HOSTILE: {m: {"margin": 0.5, "best_baseline": HOSTILE} for m in METRICS}},
        aspects={HOSTILE: {"n": 1}},
        vqa={"per_type": {HOSTILE: {"accuracy": 50.0, "n": 2}}, "baseline": {"answers": {HOSTILE: HOSTILE}}},
        grounding={"per_class": {HOSTILE: {"present": 1}}},
        samples=[Sample(name=HOSTILE, reference=HOSTILE, caption=HOSTILE + " tail", image=grey_image((32, 32)),
                        segments=[Segment(HOSTILE, 0, len(HOSTILE))], marks=[Mark(0, 8, "hallucinated", HOSTILE)],
                        missed=[HOSTILE], others={HOSTILE: HOSTILE})],
        notes=[HOSTILE])
    html = report.report_html(data)
    assert "<script" not in html.lower() and 'onmouseover="' not in html
    mark = f'<mark class="err err-hallucinated" title="{esc}">&lt;script&gt;</mark>'
    for where in (f"<title>RS-MoE evaluation \u00b7 preset {esc} \u00b7 1 experts ({esc}) \u00b7 {esc} \u00b7 {esc}<",
                  f'<p class="meta">split {esc} \u00b7', f"<tr><td>{esc}</td><td>1.00</td>",
                  f"<em>{esc} \u2212 best baseline</em>", f'title="over {esc}"', f'<em class="baseline">{esc}</em>',
                  f'<span class="sw seg-other"></span>{esc}</td>', f'<span class="ans">({esc})</span>',
                  f'alt="{esc}">', f'<div class="name">{esc}</div>', f'<div class="label">reference</div><p>{esc}</p>',
                  f'<div class="label">{esc}</div><p>{esc}</p>', f'<span class="seg seg-other" title="{esc}">{mark}',
                  f"never named): {esc}</p>", f"<li>{esc}</li>"):
        assert where in html, where
    parser = Tags()
    parser.feed(html)
    assert "script" not in parser.tags and not any(a.startswith("on") for a in parser.attrs), parser.attrs


def test_self_contained_without_paths(html, tmp_path):
    text = DATA_URI.sub("data:", html)  # base64 can spell anything, "/tmp" included
    assert "http://" not in text and "https://" not in text and "file:" not in text
    assert not re.search(r"""(?:src|href)=["'](?!data:)""", text), "every src / href must be a data URI"
    assert "<link" not in text and "@import" not in text and "url(" not in text
    for path in (str(tmp_path), "/tmp/", "/work/", "/home/", "/root/"):
        assert path not in text, path
    assert "P0001__1024__0___0.png" in text  # the name, without its folder


def test_images_are_embedded_pngs(html):
    thumbs = re.findall(r'<img class="thumb" src="data:image/png;base64,([^"]+)"', html)
    assert len(thumbs) == 2
    sizes = [Image.open(io.BytesIO(base64.b64decode(t))).size for t in thumbs]
    assert sizes == [(128, 256), (256, 192)]  # longer side 256, aspect kept
    plot = re.search(r'<img class="plot" src="data:image/png;base64,([^"]+)"', html).group(1)
    assert Image.open(io.BytesIO(base64.b64decode(plot))).size == (1000, 340)


def test_long_runs_from_csv_are_smoothed(tmp_path):
    rows = steps(1000, ["theme", "details"])
    with open(tmp_path / "stage2_steps.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    assert report.read_steps(tmp_path / "stage2_steps.csv") == rows
    assert report.read_steps(tmp_path / "stage1_steps.csv") == []
    png = report.loss_plot({"stage2": rows})
    assert Image.open(io.BytesIO(png)).size == (1000, 340)
    assert report.loss_plot({"stage1": []}) is None


def test_empty_sections_say_so(tmp_path):
    html = write_report(tmp_path / "r.html", ReportData("tiny", ["caption"], "joint", "2025-11-24")).read_text()
    for text in ("no caption scores", "no questions in this split", "no DOTA annotations", "no training steps"):
        assert text in html
    # a set without object annotations aggregates grounding over 0 images: no table of empty rates
    html = write_report(tmp_path / "r.html", ReportData("tiny", ["caption"], "joint", "2025-11-24",
                                                        grounding=aggregate([]))).read_text()
    assert "no DOTA annotations" in html
    with pytest.raises(FileNotFoundError, match="sample 'gone'.*not found"):
        write_report(tmp_path / "r.html", ReportData("tiny", ["caption"], "joint", "d", samples=[
            Sample("gone", "", "", image=tmp_path / "missing.png")]))


def test_render_png_names_the_missing_chromium(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ChromiumNotFound, match="apt-get install -y chromium"):
        render_png(tmp_path / "r.html", tmp_path / "r.png")


# ---------------------------------------------------------------------------------------------
# Rendered in Chromium


def hex_rgb(colour):
    return np.array([int(colour[i:i + 2], 16) for i in (1, 3, 5)])


def near(pixels, colour, tol=3):
    return np.all(np.abs(pixels.astype(int) - hex_rgb(colour)) <= tol, axis=-1)


def test_screenshot_shows_colours_marks_and_plot(tmp_path, data):
    require_chromium("the rendered report")
    html = write_report(tmp_path / "report.html", data)
    png = render_png(html, tmp_path / "report.png", width=1200, height=2400)
    px = np.asarray(Image.open(png).convert("RGB"))
    assert px.shape == (2400, 1200, 3)
    assert px.std() > 20 and len(np.unique(px.reshape(-1, 3), axis=0)) > 200, "the screenshot is blank"

    for aspect, (_, tint) in ASPECT_COLOURS.items():  # segment backgrounds, beyond the legend swatches
        assert near(px, tint).sum() > 2000, f"{aspect} tint {tint} missing"
    r, g, b = (px[..., i].astype(int) for i in range(3))
    assert ((r > 170) & (g < 90) & (b < 90)).sum() > 30, "no red error marks"

    face = near(px, PLOT_FACE, tol=1)
    assert face.sum() > 50_000, "the loss plot is missing"
    ys, xs = np.nonzero(face)
    plot = px[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    assert (plot.max(axis=-1) < 80).sum() > 200, "no total-loss line in the plot"
    theme = ASPECT_COLOURS["theme"][0]
    assert near(plot, theme, tol=40).sum() > 100, "no theme-expert loss line in the plot"
