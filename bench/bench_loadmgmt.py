"""Site load management at scale: 1,000 sites x 10 chargers, allocation time and profiles sent.

    .venv/bin/python bench/bench_loadmgmt.py [--sites 1000] [--chargers 10] [--minutes 60] [--seed 1]

A simulated hour of realistic churn, run through the controller's own decisions
(polaris.loadmgmt.allocator: `allocate` and `should_send`, with LOADMGMT_THRESHOLD_AMPS 1 A
and the 30 s LOADMGMT_INTERVAL_SECONDS): each site has a 63 A three-phase grid limit and two
circuits of five chargers under 40 A breakers; each charger sees cars arrive (gaps of 45 min
on average) and stay (90 min on average), each car with its own maximum (16 or 32 A, or a
single-phase 7.4 kW car at 32 A on one phase) and a taper over its last fifth. The
controller recomputes a site at every arrival and departure and every 30 s (with the cars'
measured draw), and counts a TxProfile each time `should_send` says so; TxDefault changes
and fail-safe lease renewals (every LOADMGMT_FAILSAFE_LEASE_SECONDS / 2) are counted apart.

Prints one JSON document: allocation time per site (p50, p99, max, in ms, one core, no I/O)
and profiles per minute across the fleet. The database reads and the charger round trips
are not in these figures (docs/load-management.md says what they add).
"""

from __future__ import annotations

import argparse
import heapq
import json
import random
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from polaris.loadmgmt.allocator import Demand, Node, Site, allocate, should_send  # noqa: E402

INTERVAL_S = 30.0
THRESHOLD_A = 1.0
LEASE_S = 900


@dataclass
class Car:
    started: float
    leaves: float
    max_amps: float
    phases: tuple[int, ...]

    def drawn(self, now: float, limit: float | None) -> float:
        cap = self.max_amps if limit is None else min(limit, self.max_amps)
        left = (self.leaves - now) / max(1.0, self.leaves - self.started)
        return cap * min(1.0, max(0.1, left * 5))  # tapers over the last fifth


@dataclass
class Charger:
    node: str
    car: Car | None = None
    sent: float | None = None


@dataclass
class SiteSim:
    site: Site
    chargers: list[Charger]
    allocations: int = 0
    times_ms: list[float] = field(default_factory=list)
    tx_profiles: int = 0

    def control(self, now: float) -> None:
        demands, who = [], []
        for i, c in enumerate(self.chargers):
            if c.car is None:
                continue
            drawn = c.car.drawn(now, c.sent)
            demands.append(Demand(i, c.node, c.car.phases, max_amps=32.0, drawn_amps=drawn,
                                  current_limit=c.sent, order=c.car.started))
            who.append(c)
        t0 = time.perf_counter()
        out = allocate(self.site, demands)
        self.times_ms.append((time.perf_counter() - t0) * 1000)
        self.allocations += 1
        for c, a in zip(who, out, strict=True):
            if should_send(c.sent, a.amps, THRESHOLD_A):
                c.sent = a.amps
                self.tx_profiles += 1


def make_site(n: int) -> Site:
    nodes = {"site": Node("site", 63.0), "a": Node("a", 40.0, "site"), "b": Node("b", 40.0, "site")}
    return Site("site", nodes, phases=3)


def new_car(rng: random.Random, now: float) -> Car:
    kind = rng.random()
    if kind < 0.25:
        max_amps, phases = 32.0, (rng.randrange(3),)  # a single-phase 7.4 kW car
    elif kind < 0.6:
        max_amps, phases = 16.0, (0, 1, 2)
    else:
        max_amps, phases = 32.0, (0, 1, 2)
    return Car(now, now + rng.expovariate(1 / (90 * 60)), max_amps, phases)


def run(sites: int, chargers: int, minutes: float, seed: int) -> dict:
    rng = random.Random(seed)
    horizon = minutes * 60
    sims = [SiteSim(make_site(chargers), [Charger("a" if k < chargers // 2 else "b") for k in range(chargers)])
            for _ in range(sites)]
    # Events: (time, kind, site, charger); kind 0 arrival, 1 departure, 2 the site's periodic run.
    events: list[tuple[float, int, int, int]] = []
    for s in range(sites):
        heapq.heappush(events, (rng.uniform(0, INTERVAL_S), 2, s, -1))
        for k in range(chargers):
            if rng.random() < 0.6:  # 60 % of the spaces busy at the start
                car = new_car(rng, -rng.uniform(0, 90 * 60))
                car.leaves = max(car.leaves, rng.uniform(0, 90 * 60))
                sims[s].chargers[k].car = car
                heapq.heappush(events, (car.leaves, 1, s, k))
            else:
                heapq.heappush(events, (rng.expovariate(1 / (45 * 60)), 0, s, k))
    churn = 0
    wall = time.perf_counter()
    while events:
        at, kind, s, k = heapq.heappop(events)
        if at > horizon:
            break
        sim = sims[s]
        if kind == 2:
            sim.control(at)
            heapq.heappush(events, (at + INTERVAL_S, 2, s, -1))
            continue
        c = sim.chargers[k]
        churn += 1
        if kind == 0:
            c.car, c.sent = new_car(rng, at), None
            heapq.heappush(events, (c.car.leaves, 1, s, k))
        else:
            c.car, c.sent = None, None
            heapq.heappush(events, (at + rng.expovariate(1 / (45 * 60)), 0, s, k))
        sim.control(at)
    elapsed = time.perf_counter() - wall
    times = sorted(t for sim in sims for t in sim.times_ms)
    allocations = sum(sim.allocations for sim in sims)
    tx = sum(sim.tx_profiles for sim in sims)
    leases = sites * chargers * horizon / (LEASE_S / 2)
    return {
        "sites": sites, "chargers_per_site": chargers, "simulated_minutes": minutes,
        "allocations": allocations,
        "allocation_ms": {"p50": round(times[len(times) // 2], 4), "p99": round(times[int(len(times) * 0.99)], 4),
                          "max": round(times[-1], 3), "mean": round(statistics.fmean(times), 4)},
        "allocation_cpu_share_of_one_core": round(sum(times) / 1000 / horizon, 4),
        "arrivals_and_departures_per_minute": round(churn / minutes, 1),
        "tx_profiles_per_minute": round(tx / minutes, 1),
        "lease_renewals_per_minute": round(leases / minutes, 1),
        "wall_seconds": round(elapsed, 1),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sites", type=int, default=1000)
    p.add_argument("--chargers", type=int, default=10)
    p.add_argument("--minutes", type=float, default=60)
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args()
    print(json.dumps(run(a.sites, a.chargers, a.minutes, a.seed), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
