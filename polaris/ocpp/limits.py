"""Admission limits: what keeps a flood of connections, guesses or messages from costing much.

Version-neutral, in memory, per server process (each instance limits what reaches it):
  - `Backoff`: failed credentials per charge box id and per client address; after
    `threshold` failures a key is locked for a back-off that doubles with each further
    failure (up to `max_s`); while locked, admission answers 401 without a database look-up;
  - `NegativeCache`: charge box ids the database did not know, for `ttl_s`, so a scanner
    trying ids costs no query per try;
  - `ConnectionCounts`: open connections per client address, capped;
  - `TokenBucket`: messages per second of one connection;
The address those limits count is `polaris.forwarded.client_ip` of the handshake: the
right-most X-Forwarded-For hop that is not one of TRUSTED_PROXIES (Caddy terminates TLS in
front of us).
Every table here is bounded: an attacker with many addresses or ids evicts old entries
instead of growing memory.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

Clock = Callable[[], float]
MAX_KEYS = 100_000  # per table: oldest entries go first


class _Bounded(OrderedDict):
    """An LRU dict that drops its oldest entries beyond `limit`."""

    def __init__(self, limit: int = MAX_KEYS):
        super().__init__()
        self.limit = limit

    def put(self, key, value) -> None:
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.limit:
            self.popitem(last=False)


@dataclass(slots=True)
class _Failures:
    count: int
    locked_until: float
    last: float


class Backoff:
    """Failures per key (an id, an address); locked for a doubling back-off past `threshold`.

    A key's failures are forgotten `forget_s` after its last one, or at its next success.
    """

    def __init__(self, threshold: int, max_s: float, *, base_s: float = 1.0, forget_s: float = 900.0,
                 clock: Clock = time.monotonic):
        self.threshold = threshold
        self.max_s = max_s
        self.base_s = base_s
        self.forget_s = forget_s
        self.clock = clock
        self._keys: _Bounded = _Bounded()

    def locked_for(self, key: str) -> float:
        """Seconds `key` is still locked (0: not locked)."""
        entry = self._keys.get(key)
        if entry is None:
            return 0.0
        now = self.clock()
        if now - entry.last > self.forget_s:
            del self._keys[key]
            return 0.0
        return max(0.0, entry.locked_until - now)

    def failed(self, key: str) -> float:
        """Count a failure; the back-off it starts (0 while under the threshold)."""
        now = self.clock()
        entry = self._keys.get(key)
        if entry is None or now - entry.last > self.forget_s:
            entry = _Failures(0, 0.0, now)
        entry.count += 1
        entry.last = now
        backoff = 0.0
        if entry.count >= self.threshold:
            backoff = min(self.max_s, self.base_s * 2 ** (entry.count - self.threshold))
            entry.locked_until = now + backoff
        self._keys.put(key, entry)
        return backoff

    def succeeded(self, key: str) -> None:
        self._keys.pop(key, None)


class NegativeCache:
    """Keys known not to exist, each for `ttl_s`."""

    def __init__(self, ttl_s: float, *, clock: Clock = time.monotonic):
        self.ttl_s = ttl_s
        self.clock = clock
        self._keys: _Bounded = _Bounded()

    def __contains__(self, key: str) -> bool:
        at = self._keys.get(key)
        if at is None:
            return False
        if self.clock() - at > self.ttl_s:
            del self._keys[key]
            return False
        return True

    def add(self, key: str) -> None:
        if self.ttl_s > 0:
            self._keys.put(key, self.clock())

    def discard(self, key: str) -> None:
        self._keys.pop(key, None)

    def clear(self) -> None:
        self._keys.clear()


class ConnectionCounts:
    """Open connections per client address."""

    def __init__(self, cap: int):
        self.cap = cap
        self._open: dict[str, int] = {}

    def full(self, address: str) -> bool:
        return self._open.get(address, 0) >= self.cap

    def opened(self, address: str) -> None:
        self._open[address] = self._open.get(address, 0) + 1

    def closed(self, address: str) -> None:
        n = self._open.get(address, 0) - 1
        if n > 0:
            self._open[address] = n
        else:
            self._open.pop(address, None)

    def __getitem__(self, address: str) -> int:
        return self._open.get(address, 0)


class TokenBucket:
    """`rate` messages a second, bursts of up to `burst`; `take()` says whether one may pass."""

    __slots__ = ("rate", "burst", "tokens", "at", "clock")

    def __init__(self, rate: float, burst: float, *, clock: Clock = time.monotonic):
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.clock = clock
        self.at = clock()

    def take(self) -> bool:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False
