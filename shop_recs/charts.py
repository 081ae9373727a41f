"""Small server-rendered SVG charts for the admin (no JavaScript library, no CDN).

Every label goes through format_html, so text from the database is escaped.
"""

from __future__ import annotations

from collections.abc import Sequence

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

WIDTH, HEIGHT, PAD = 520, 180, 34
COLOURS = ["#2563eb", "#dc2626", "#16a34a", "#9333ea"]


def line_chart(series: dict[str, Sequence[tuple[float, float]]], *, title: str,
               y_label: str = "") -> SafeString:
    """One line per series of (x, y) points, axes scaled to the data."""
    points = [p for values in series.values() for p in values]
    if not points:
        return format_html('<p class="help">{}: no data yet.</p>', title)
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    y0, y1 = min(0.0, min(ys)), max(ys) * 1.1 if max(ys) > 0 else 1.0

    # Coordinates are formatted to text here: format_html escapes its arguments into strings.
    def sx(x: float) -> str:
        return f"{PAD + (x - x0) / (x1 - x0) * (WIDTH - 2 * PAD):.1f}"

    def sy(y: float) -> str:
        return f"{HEIGHT - PAD + (y - y0) / (y1 - y0) * (2 * PAD - HEIGHT):.1f}"

    lines = []
    for i, (name, values) in enumerate(series.items()):
        colour = COLOURS[i % len(COLOURS)]
        path = " ".join(f"{sx(x)},{sy(y)}" for x, y in values)
        dots = format_html_join(
            "", '<circle cx="{}" cy="{}" r="2.5" fill="{}"><title>{}: {}</title></circle>',
            ((sx(x), sy(y), colour, name, f"{y:.4f}") for x, y in values),
        )
        lines.append(format_html(
            '<polyline fill="none" stroke="{}" stroke-width="2" points="{}"/>{}'
            '<text x="{}" y="{}" fill="{}" font-size="11">{}</text>',
            colour, path, dots, WIDTH - PAD - 90, PAD + 14 * i, colour, name,
        ))
    return format_html(
        '<svg class="shop-recs-chart" role="img" aria-label="{}" width="{}" height="{}" '
        'viewBox="0 0 {} {}" xmlns="http://www.w3.org/2000/svg">'
        '<text x="{}" y="14" font-size="12" font-weight="bold">{}</text>'
        '<line x1="{}" y1="{}" x2="{}" y2="{}" stroke="#999"/>'
        '<line x1="{}" y1="{}" x2="{}" y2="{}" stroke="#999"/>'
        '<text x="2" y="{}" font-size="10">{}</text>'
        '<text x="2" y="{}" font-size="10">{}</text>'
        '<text x="{}" y="{}" font-size="10">{}</text>{}</svg>',
        title, WIDTH, HEIGHT, WIDTH, HEIGHT, PAD, title,
        PAD, HEIGHT - PAD, WIDTH - PAD, HEIGHT - PAD, PAD, PAD, PAD, HEIGHT - PAD,
        float(sy(y1)) + 4, f"{y1:.3f}", sy(y0), f"{y0:.3f}", WIDTH / 2 - 20, HEIGHT - 8, y_label,
        mark_safe("".join(lines)),  # noqa: S308 - built from format_html pieces above
    )
