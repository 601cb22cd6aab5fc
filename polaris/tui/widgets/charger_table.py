"""A virtual table of chargers on Textual's Line API: only visible lines are ever rendered.

The built-in DataTable rebuilds its caches on every cell update (O(rows)); here a live
status change repaints just the lines it touched, so 10,000 chargers stay smooth.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime

from rich.segment import Segment
from rich.style import Style
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from polaris.tui.charger_store import ChargerRow, ChargerStore

STATUS_STYLES = {
    "Offline": Style(color="grey50"),
    "Faulted": Style(color="red", bold=True),
    "Unavailable": Style(color="yellow"),
    "Charging": Style(color="green", bold=True),
    "SuspendedEV": Style(color="green"),
    "SuspendedEVSE": Style(color="green"),
    "Preparing": Style(color="cyan"),
    "Finishing": Style(color="cyan"),
    "Available": Style(color="bright_blue"),
}

# (title, width); the last column takes what is left.
COLUMNS = (("Charger", 18), ("Status", 13), ("Connectors", 22), ("Last msg", 10), ("Site", 0))


def age(then: datetime | None, now: datetime) -> str:
    if then is None:
        return "never"
    s = int((now - then).total_seconds())
    if s < 0:
        return "now"
    if s < 60:
        return f"{s}s ago"
    if s < 3600:
        return f"{s // 60}m ago"
    if s < 86400:
        return f"{s // 3600}h ago"
    return f"{s // 86400}d ago"


def connectors_text(row: ChargerRow) -> str:
    short = {"Available": "Av", "Charging": "Ch", "Faulted": "Ft", "Unavailable": "Un", "Preparing": "Pr",
             "Finishing": "Fi", "SuspendedEV": "SE", "SuspendedEVSE": "SS", "Reserved": "Rs"}
    parts = [f"{cid}:{short.get(s or '', (s or '?')[:2])}" for cid, s in sorted(row.connectors.items()) if cid]
    return " ".join(parts)


def fit(text: str, width: int) -> str:
    if width <= 0:
        return ""
    if len(text) > width:
        return text[: width - 1] + "…"
    return text.ljust(width)


class ChargerTable(ScrollView, can_focus=True):
    """Rows come from a ChargerStore; the cursor is a line of the store's filtered view."""

    DEFAULT_CSS = """
    ChargerTable { height: 1fr; }
    ChargerTable > .charger-table--header { text-style: bold; background: $panel; }
    ChargerTable > .charger-table--cursor { background: $accent 40%; }
    ChargerTable:focus > .charger-table--cursor { background: $accent; }
    """
    COMPONENT_CLASSES = {"charger-table--header", "charger-table--cursor"}
    BINDINGS = [
        Binding("up,k", "cursor(-1)", "Up", show=False),
        Binding("down,j", "cursor(1)", "Down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home", "jump(0)", "Top", show=False),
        Binding("end", "jump(-1)", "Bottom", show=False),
        Binding("enter", "open", "Open"),
    ]

    cursor = reactive(0, always_update=True, repaint=False)

    class Opened(Message):
        """Enter on a row."""

        def __init__(self, charge_box_id: str):
            self.charge_box_id = charge_box_id
            super().__init__()

    def __init__(self, store: ChargerStore, clock: Callable[[], datetime], **kwargs):
        super().__init__(**kwargs)
        self.store = store
        self.clock = clock
        self._now = clock()

    # --- size and data ---------------------------------------------------------------

    def on_mount(self) -> None:
        self.reload()

    def reload(self) -> None:
        """The store's view changed shape (load, filter): resize and repaint everything."""
        self.virtual_size = Size(self.size.width or 80, len(self.store.view) + 1)
        if self.cursor >= len(self.store.view):
            self.cursor = max(0, len(self.store.view) - 1)
        self._now = self.clock()
        self.refresh()

    def rows_changed(self, touched: Iterable[int]) -> None:
        """Repaint only the visible lines whose rows changed."""
        top = int(self.scroll_y)
        view = self.store.view
        visible = {view[line]: line for line in range(top, min(top + self.size.height - 1, len(view)))}
        for i in touched:
            line = visible.get(i)
            if line is not None:
                self.refresh_line(line - top + 1)  # +1: the header line

    def tick(self) -> None:
        """Advance the clock used for "x ago" and repaint the visible lines (cheap)."""
        self._now = self.clock()
        self.refresh()

    @property
    def selected(self) -> ChargerRow | None:
        return self.store.row_at(self.cursor)

    def select(self, charge_box_id: str) -> bool:
        line = self.store.line_of(charge_box_id)
        if line is None:
            return False
        self.cursor = line
        return True

    # --- rendering -------------------------------------------------------------------

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        if y == 0:
            style = self.get_component_rich_style("charger-table--header")
            text = "".join(fit(title, w or max(0, width - self._fixed_width())) + " " for title, w in COLUMNS)
            return Strip([Segment(fit(text, width), style)], width)
        line = int(self.scroll_y) + y - 1
        row = self.store.row_at(line)
        if row is None:
            return Strip.blank(width, self.rich_style)
        base = self.rich_style
        if line == self.cursor:
            base = base + self.get_component_rich_style("charger-table--cursor")
        rest = max(0, width - self._fixed_width())
        cells = (
            (fit(row.charge_box_id, 18), None),
            (fit(row.status if not row.error_code or row.status != "Faulted" else f"Faulted {row.error_code}", 13),
             STATUS_STYLES.get(row.status)),
            (fit(connectors_text(row), 22), None),
            (fit(age(row.last_seen_at, self._now) if row.connected else "-", 10), None),
            (fit(row.site, rest), None),
        )
        segments = []
        for text, style in cells:
            segments.append(Segment(text, base + style if style else base))
            segments.append(Segment(" ", base))
        return Strip(segments).crop(0, width).extend_cell_length(width, base)

    def _fixed_width(self) -> int:
        return sum(w + 1 for _, w in COLUMNS if w) + 1

    # --- cursor ---------------------------------------------------------------------

    def watch_cursor(self, old: int, new: int) -> None:
        top = int(self.scroll_y)
        body = max(1, self.size.height - 1)
        if new < top:
            self.scroll_to(y=new, animate=False)
        elif new >= top + body:
            self.scroll_to(y=new - body + 1, animate=False)
        self.refresh_line(old - int(self.scroll_y) + 1)
        self.refresh_line(new - int(self.scroll_y) + 1)

    def _move(self, to: int) -> None:
        n = len(self.store.view)
        self.cursor = max(0, min(n - 1, to)) if n else 0

    def action_cursor(self, delta: int) -> None:
        self._move(self.cursor + delta)

    def action_page(self, direction: int) -> None:
        self._move(self.cursor + direction * max(1, self.size.height - 2))

    def action_jump(self, to: int) -> None:
        self._move(to if to >= 0 else len(self.store.view) - 1)

    def action_open(self) -> None:
        row = self.selected
        if row is not None:
            self.post_message(self.Opened(row.charge_box_id))

    def on_click(self, event) -> None:
        if event.y >= 1:
            self._move(int(self.scroll_y) + event.y - 1)

    def on_resize(self) -> None:
        self.virtual_size = Size(self.size.width, len(self.store.view) + 1)

    def watch_scroll_y(self, old: float, new: float) -> None:
        super().watch_scroll_y(old, new)
        self._now = self.clock()
