"""The allocator: given a site's tree of breakers and its charging sessions, a limit for each.

Pure: no I/O, no clock. The controller (controller.py) gathers the inputs from the database
and sends what comes out.

The site is the root of a tree of circuits (breakers); every charger hangs off one node.
Each node limits every phase to `limit_amps`; the site may also limit total power (kW).
A session uses one or three of the site's phases. The result keeps, for every node and
phase, the sum of the limits given (plus what chargers that refused a profile may draw) at
or under the node's limit; every car gets at least its minimum (6 A, the lowest current
IEC 61851 lets a car be signalled) or 0 A with a reason; and what a car does not draw (a
car tapering, a small on-board charger) goes to the others.

Policies: `equal` raises every car together (water-filling), `first_come` serves sessions
in the order they started, each up to what it can use. Both admit cars to their minimum in
start order, so the newest car is the one paused when there is not room for everyone.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

OCPP_MIN_AMPS = 6.0  # below this a car cannot be signalled to charge (IEC 61851 PWM)
NOMINAL_VOLTAGE = 230.0
# A car drawing this much less than its limit does not use the rest: it is offered to others.
UNUSED_SLACK_AMPS = 1.5
# What a car that under-draws keeps above its draw, so it can show it wants more. More than the
# slack, so a car held at its own maximum stays "under-drawing" next time (no flip-flopping
# between two cars each run), and less than a car signalled for more draws below its limit.
HEADROOM_AMPS = 2.5
_EPS = 1e-6

POLICIES = ("equal", "first_come")


@dataclass(frozen=True, slots=True)
class Node:
    """The site (parent None) or a circuit under it: a breaker limiting each phase."""

    id: str
    limit_amps: float
    parent: str | None = None


@dataclass(frozen=True, slots=True)
class Site:
    """The tree: `nodes` holds the root (the site, `root`) and its circuits."""

    root: str
    nodes: dict[str, Node]
    phases: int = 3
    limit_kw: float | None = None  # total power, all phases together
    policy: str = "equal"

    def path(self, node_id: str) -> list[str]:
        """From a node up to the root (an unknown node hangs off the root)."""
        out: list[str] = []
        current: str | None = node_id if node_id in self.nodes else self.root
        while current is not None and current not in out:
            out.append(current)
            current = self.nodes[current].parent
        if self.root not in out:
            out.append(self.root)
        return out


@dataclass(frozen=True, slots=True)
class Demand:
    """One charging session as the allocator sees it."""

    key: object  # the caller's handle (charger pk, connector id)
    node: str  # where its charger hangs (a circuit id, or the site's root)
    phases: tuple[int, ...] = (0, 1, 2)  # which of the site's phases it draws on
    min_amps: float = OCPP_MIN_AMPS
    max_amps: float = 32.0  # the charger's (and cable's) maximum per phase
    drawn_amps: float | None = None  # measured, highest phase; None: not known yet
    current_limit: float | None = None  # the limit in force now (what it was last given)
    order: float = 0.0  # when it started: earlier first
    refused: bool = False  # its charger rejected the last profile: it may draw its maximum


@dataclass(frozen=True, slots=True)
class Allocation:
    key: object
    amps: float  # per phase; 0: paused
    reason: str | None = None  # why paused, or why held at a fixed value


@dataclass(slots=True)
class _Resource:
    name: str
    capacity: float
    users: dict[int, float] = field(default_factory=dict)  # session index -> weight per amp


def wanted(d: Demand) -> float:
    """What the session can use: its maximum, or a little over its draw when it clearly draws
    less than it was given (the rest goes to others; it gets more back once it draws it)."""
    top = max(d.max_amps, 0.0)
    if (d.drawn_amps is not None and d.current_limit is not None
            and d.drawn_amps < d.current_limit - UNUSED_SLACK_AMPS):
        return min(top, max(d.min_amps, d.drawn_amps + HEADROOM_AMPS))
    return top


def _resources(site: Site, demands: Sequence[Demand]) -> list[_Resource]:
    res: dict[tuple, _Resource] = {}
    for node in site.nodes.values():
        for ph in range(site.phases):
            res[(node.id, ph)] = _Resource(f"{node.id} L{ph + 1}", node.limit_amps)
    if site.limit_kw is not None:
        res[("kw",)] = _Resource(f"{site.root} kW", site.limit_kw * 1000.0)
    for i, d in enumerate(demands):
        phases = [p for p in d.phases if p < site.phases] or [0]
        for node_id in site.path(d.node):
            for ph in phases:
                res[(node_id, ph)].users[i] = 1.0
        if site.limit_kw is not None:
            res[("kw",)].users[i] = NOMINAL_VOLTAGE * len(phases)
    return list(res.values())


def _fits(resources: Iterable[_Resource], alloc: list[float], i: int, amps: float) -> _Resource | None:
    """The first resource that would be exceeded by giving session `i` `amps` more, or None."""
    for r in resources:
        w = r.users.get(i)
        if w is not None and _used(r, alloc) + w * amps > r.capacity + _EPS:
            return r
    return None


def _used(r: _Resource, alloc: list[float]) -> float:
    return sum(w * alloc[j] for j, w in r.users.items())


def floor_tenth(x: float) -> float:
    """OCPP limits go with one decimal; rounding down never exceeds."""
    return math.floor(x * 10 + _EPS) / 10


def allocate(site: Site, demands: Sequence[Demand]) -> list[Allocation]:
    """A limit (A per phase) for each demand, in the order given."""
    if site.policy not in POLICIES:
        raise ValueError(f"unknown policy {site.policy!r}; one of {', '.join(POLICIES)}")
    n = len(demands)
    resources = _resources(site, demands)
    alloc = [0.0] * n
    reasons: list[str | None] = [None] * n
    active: list[int] = []
    # Chargers that refused a profile may draw their maximum (or more, if we see it): fixed.
    for i, d in enumerate(demands):
        if d.refused:
            alloc[i] = max(d.max_amps, d.drawn_amps or 0.0)
            reasons[i] = "charger refused the profile: counted at its maximum"
    order = sorted((i for i in range(n) if not demands[i].refused), key=lambda i: (demands[i].order, i))
    for i in order:
        d = demands[i]
        minimum = max(d.min_amps, OCPP_MIN_AMPS)
        if d.max_amps + _EPS < minimum:
            reasons[i] = f"charger maximum {d.max_amps:g} A is under the minimum {minimum:g} A"
            continue
        full = _fits(resources, alloc, i, minimum)
        if full is not None:
            reasons[i] = f"no room for {minimum:g} A on {full.name}"
            continue
        alloc[i] = minimum
        active.append(i)
    target = {i: max(wanted(demands[i]), alloc[i]) for i in active}
    if site.policy == "first_come":
        for i in active:
            room = min((( r.capacity - _used(r, alloc)) / r.users[i] for r in resources if i in r.users),
                       default=math.inf)
            alloc[i] += max(0.0, min(target[i] - alloc[i], room))
    else:
        _water_fill(resources, alloc, target, active)
    out = []
    for i, d in enumerate(demands):
        amps = alloc[i] if d.refused else floor_tenth(alloc[i])
        if not d.refused and 0 < amps < max(d.min_amps, OCPP_MIN_AMPS):  # rounding only
            amps = max(d.min_amps, OCPP_MIN_AMPS)
        out.append(Allocation(d.key, amps, reasons[i]))
    return out


def _water_fill(resources: list[_Resource], alloc: list[float], target: dict[int, float],
                active: list[int]) -> None:
    """Raise every unfrozen session by the same amount until each hits its target or a full resource."""
    growing = {i for i in active if target[i] - alloc[i] > _EPS}
    while growing:
        step = min(target[i] - alloc[i] for i in growing)
        for r in resources:
            weight = sum(w for j, w in r.users.items() if j in growing)
            if weight > 0:
                step = min(step, max(0.0, r.capacity - _used(r, alloc)) / weight)
        for i in growing:
            alloc[i] += step
        saturated = {id(r) for r in resources if r.capacity - _used(r, alloc) <= _EPS}
        growing = {
            i for i in growing
            if target[i] - alloc[i] > _EPS
            and not any(id(r) in saturated and i in r.users for r in resources)
        }


def site_totals(site: Site, demands: Sequence[Demand], amps: Sequence[float]) -> list[float]:
    """Amps per phase at the site's root for these limits (what the grid connection carries)."""
    totals = [0.0] * site.phases
    for d, a in zip(demands, amps, strict=True):
        for ph in ([p for p in d.phases if p < site.phases] or [0]):
            totals[ph] += a
    return totals


def should_send(sent: float | None, target: float, threshold: float) -> bool:
    """Whether a new limit goes to the charger: always when nothing was sent or the limit drops
    (a car over its share is the fuse's risk), when it rises by more than `threshold`, or leaves 0."""
    if sent is None or target < sent - 0.05:
        return True
    return target > sent + threshold or (sent == 0 and target > 0)
