"""Why the SSE streams are not aiohttp-sse's: one event fanned out to N open streams, three ways.

    .venv/bin/pip install --no-deps --target /tmp/aiohttp-sse aiohttp-sse
    PYTHONPATH=/tmp/aiohttp-sse .venv/bin/python bench/compare_aiohttp_sse.py [N]

- ours: polaris.services.live's `sse_response`; the bus writes each event's bytes (serialized
  once) straight to every socket, one heartbeat timer for all streams;
- aiohttp-sse, a task per stream: each handler awaits its queue and `await resp.send()`
  (the library's usage), so one event wakes N tasks;
- aiohttp-sse, awaited send: the publisher awaits `send()` on every response in turn.

Not part of `make bench` (aiohttp-sse is not a dependency). Clients are raw sockets in the
same loop, so the figures compare the three, they are not the fan-out latency
(`bench_sse.py` measures that). Prints, per way: tasks alive while the streams are idle, the
time the publisher is busy, and the time until every client has the event (median).
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp_sse
from aiohttp import web

from polaris.services.live import sse_response
from polaris.services.live.bus import EVENT_BUS, Event, EventBus

ROUNDS = 20
WAYS = ("ours", "aiohttp-sse, a task per stream", "aiohttp-sse, awaited send")


async def open_clients(port: int, n: int) -> list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    clients = []
    for _ in range(n):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /s HTTP/1.1\r\nHost: x\r\n\r\n")
        clients.append((reader, writer))
    return clients


async def all_received(readers: list[asyncio.StreamReader], marker: bytes) -> None:
    async def one(reader: asyncio.StreamReader) -> None:
        seen = b""
        while marker not in seen:
            seen += await reader.read(65536)

    await asyncio.gather(*(one(r) for r in readers))


def make_app(way: str, streams: list) -> web.Application:
    app = web.Application()
    if way == WAYS[0]:
        app[EVENT_BUS] = EventBus(None, transport="memory")  # type: ignore[arg-type]  # no replay here

        async def handler(request: web.Request) -> web.StreamResponse:
            return await sse_response(request, topics=["admin"])

    elif way == WAYS[1]:

        async def handler(request: web.Request) -> web.StreamResponse:
            queue: asyncio.Queue = asyncio.Queue()
            streams.append(queue)
            async with aiohttp_sse.sse_response(request) as resp:
                while True:
                    id_, type_, data = await queue.get()
                    await resp.send(data, id=id_, event=type_)
            return resp

    else:

        async def handler(request: web.Request) -> web.StreamResponse:
            async with aiohttp_sse.sse_response(request) as resp:
                streams.append(resp)
                await resp.wait()
            return resp

    app.router.add_get("/s", handler)
    return app


async def compare(way: str, n: int) -> None:
    streams: list = []
    app = make_app(way, streams)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    clients = await open_clients(port, n)
    readers = [r for r, _ in clients]
    await asyncio.sleep(1.0)
    idle_tasks = len(asyncio.all_tasks())
    rounds = []
    for i in range(ROUNDS):
        data = f'{{"n":{i}}}'
        waiter = asyncio.ensure_future(all_received(readers, data.encode()))
        await asyncio.sleep(0)
        t0 = time.perf_counter()
        if way == WAYS[0]:
            app[EVENT_BUS].dispatch(Event.make(i + 1, ["admin"], "charger.status", {"n": i}))
        elif way == WAYS[1]:
            for queue in streams:
                queue.put_nowait((str(i + 1), "charger.status", data))
        else:
            for resp in list(streams):
                await resp.send(data, id=str(i + 1), event="charger.status")
        busy = time.perf_counter() - t0
        await waiter
        rounds.append((time.perf_counter() - t0, busy))
    for _, writer in clients:
        writer.close()  # the streams end, so the server's shutdown does not wait for them
    await runner.cleanup()
    rounds.sort()
    done, busy = rounds[len(rounds) // 2]
    print(f"{way:32s} N={n}: {idle_tasks:5d} tasks while idle; publisher busy {busy * 1000:6.1f} ms; "
          f"every client has it after {done * 1000:6.1f} ms")


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    for way in WAYS:
        asyncio.run(compare(way, n))


if __name__ == "__main__":
    main()
