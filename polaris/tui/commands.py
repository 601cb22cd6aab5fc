"""Command palette provider: jump to a charger by id (from the loaded table)."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from textual.command import DiscoveryHit, Hit, Hits, Provider

if TYPE_CHECKING:
    from polaris.tui.app import PolarisApp

MAX_HITS = 20


class ChargerJumpProvider(Provider):
    @property
    def polaris(self) -> PolarisApp:
        return self.app  # type: ignore[return-value]

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        found = 0
        needle = query.strip().lower()
        for row in self.polaris.store.rows:
            # Substring first: cheap over 10,000 ids; fuzzy score only for the candidates.
            if needle and needle not in row.charge_box_id.lower():
                continue
            score = matcher.match(row.charge_box_id)
            if score <= 0:
                continue
            yield Hit(
                score,
                matcher.highlight(row.charge_box_id),
                partial(self.polaris.open_charger, row.charge_box_id),
                text=row.charge_box_id,
                help=f"Open charger · {row.status}{' · ' + row.site if row.site else ''}",
            )
            found += 1
            if found >= MAX_HITS:
                return

    async def discover(self) -> Hits:
        for row in self.polaris.store.rows[:5]:
            yield DiscoveryHit(row.charge_box_id, partial(self.polaris.open_charger, row.charge_box_id),
                               help="Open charger")
