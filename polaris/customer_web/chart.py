"""A small energy-over-time chart as inline SVG, drawn on the server (no script needed)."""

from __future__ import annotations

from datetime import datetime
from xml.sax.saxutils import escape

WIDTH, HEIGHT = 600, 240
LEFT, RIGHT, TOP, BOTTOM = 48, 12, 12, 32


def energy_svg(points: list[tuple[datetime, float]], *, title: str, empty_text: str) -> str:
    """kWh delivered over time; `points` are (time, kWh since the start), oldest first."""
    label = escape(title)
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{label}" class="chart"><title>{label}</title>'
    )
    if len(points) < 2:
        return (
            head + f'<text x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle">{escape(empty_text)}</text></svg>'
        )
    t0 = points[0][0]
    span = max(1.0, (points[-1][0] - t0).total_seconds())
    top = max(0.001, max(kwh for _, kwh in points))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def xy(t: datetime, kwh: float) -> str:
        x = LEFT + plot_w * (t - t0).total_seconds() / span
        y = TOP + plot_h * (1 - kwh / top)
        return f"{x:.1f},{y:.1f}"

    line = " ".join(xy(t, k) for t, k in points)
    area = f"{LEFT},{TOP + plot_h} {line} {LEFT + plot_w},{TOP + plot_h}"
    minutes = span / 60
    parts = [
        head,
        f'<line x1="{LEFT}" y1="{TOP + plot_h}" x2="{LEFT + plot_w}" y2="{TOP + plot_h}" class="axis"/>',
        f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{TOP + plot_h}" class="axis"/>',
        f'<polygon points="{area}" class="area"/>',
        f'<polyline points="{line}" class="line" fill="none"/>',
        f'<text x="{LEFT - 6}" y="{TOP + 10}" text-anchor="end">{top:.2f}</text>',
        f'<text x="{LEFT - 6}" y="{TOP + plot_h}" text-anchor="end">0</text>',
        f'<text x="{LEFT - 6}" y="{TOP + plot_h / 2}" text-anchor="end">kWh</text>',
        f'<text x="{LEFT}" y="{HEIGHT - 8}">{escape(t0.strftime("%H:%M"))}</text>',
        f'<text x="{LEFT + plot_w}" y="{HEIGHT - 8}" text-anchor="end">'
        f'{escape(points[-1][0].strftime("%H:%M"))} ({minutes:.0f} min)</text>',
        "</svg>",
    ]
    return "".join(parts)
