"""Accessibility of the report: headings in order, every chart described, text contrast at WCAG AA (4.5:1)."""

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from audit.render.html import render_html
from audit.resources import templates_dir

SAMPLE = Path(__file__).parent / "fixtures" / "result_sample.json"


class _Outline(HTMLParser):
    def __init__(self):
        super().__init__()
        self.headings: list[int] = []
        self.svgs: list[dict] = []
        self._svg = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if re.fullmatch(r"h[1-6]", tag):
            self.headings.append(int(tag[1]))
        if tag == "svg":
            self._svg = {"role": a.get("role"), "label": a.get("aria-label") or a.get("aria-labelledby"),
                         "hidden": a.get("aria-hidden"), "title": False}
            self.svgs.append(self._svg)
        if tag == "title" and self._svg is not None:
            self._svg["title"] = True

    def handle_endtag(self, tag):
        if tag == "svg":
            self._svg = None


@pytest.fixture(scope="module")
def outline():
    parser = _Outline()
    parser.feed(render_html(json.loads(SAMPLE.read_text())))
    return parser


def test_headings_start_at_h1_and_never_skip_a_level(outline):
    h = outline.headings
    assert h[0] == 1 and h.count(1) == 1
    for prev, cur in zip(h, h[1:]):
        assert cur <= prev + 1, f"heading level jumps from h{prev} to h{cur}"


def test_every_chart_is_described(outline):
    charts = [s for s in outline.svgs if s["hidden"] != "true"]
    assert charts, "the sample report has charts"
    for s in charts:
        assert s["role"] == "img" and (s["label"] or s["title"]), s


def _luminance(hex_colour: str) -> float:
    rgb = [int(hex_colour[i:i + 2], 16) / 255 for i in (1, 3, 5)]
    lin = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in rgb]
    return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]


def contrast(fg: str, bg: str) -> float:
    a, b = sorted((_luminance(fg), _luminance(bg)), reverse=True)
    return (a + 0.05) / (b + 0.05)


def test_contrast_ratio_reference_values():
    assert contrast("#000000", "#ffffff") == pytest.approx(21.0)
    assert contrast("#777777", "#ffffff") == pytest.approx(4.48, abs=0.01)  # the classic just-failing grey


def test_status_colours_and_text_pass_wcag_aa():
    css = (templates_dir() / "base.html").read_text()
    pairs = re.findall(r"\.st-[a-z]+(?:, \.st-[a-z]+)? \{ color: (#[0-9a-f]{6}); background: (#[0-9a-f]{6}); \}", css)
    assert len(pairs) >= 7
    variables = dict(re.findall(r"--([a-z]+): (#[0-9a-f]{6})", css))
    pairs += [(variables["ink"], "#ffffff"), (variables["muted"], "#ffffff"), (variables["muted"], variables["soft"]),
              (variables["ink"], variables["soft"])]
    for fg, bg in pairs:
        assert contrast(fg, bg) >= 4.5, f"{fg} on {bg}: {contrast(fg, bg):.2f}"
