#!/usr/bin/env python3
"""Helpers of benches/slow_clients.sh, on 127.0.0.1 only.

  slow_clients.py legit PORT RATE SECONDS    fixed-rate legitimate GETs, half
      on new connections, half on 16 keep-alive connections; latency from
      each request's intended send time. Prints one JSON line.
  slow_clients.py trickle PORT COUNT SECONDS chunked bodies, one byte a second
  slow_clients.py idle PORT COUNT SECONDS    silent and idle keep-alive connections
"""
import asyncio
import json
import resource
import sys
import time

HOST = "127.0.0.1"
REQUEST = b"GET /sales/active HTTP/1.1\r\nHost: bench\r\n\r\n"
TIMEOUT_S = 5.0
POOL = 16


async def read_answer(reader):
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    await reader.readexactly(length)
    return status


async def one_request(port, pool):
    if pool is None:
        reader, writer = await asyncio.open_connection(HOST, port)
        try:
            writer.write(REQUEST)
            return await read_answer(reader)
        finally:
            writer.close()
    reader, writer = await pool.get()
    try:
        writer.write(REQUEST)
        status = await read_answer(reader)
        pool.put_nowait((reader, writer))
        return status
    except Exception:
        writer.close()
        pool.put_nowait(await asyncio.open_connection(HOST, port))
        raise


async def legit(port, rate, seconds):
    pool = asyncio.Queue()
    for _ in range(POOL):
        pool.put_nowait(await asyncio.open_connection(HOST, port))
    latencies, failures, tasks = [], 0, []
    start = time.monotonic()
    total = int(rate * seconds)

    async def fire(i, intended):
        nonlocal failures
        try:
            status = await asyncio.wait_for(
                one_request(port, None if i % 2 == 0 else pool), TIMEOUT_S)
            if status != 200:
                failures += 1
            else:
                latencies.append(time.monotonic() - intended)
        except Exception:
            failures += 1

    for i in range(total):
        intended = start + i / rate
        delay = intended - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(fire(i, intended)))
    await asyncio.gather(*tasks)
    latencies.sort()
    pct = lambda p: round(1000 * latencies[min(len(latencies) - 1, int(p * len(latencies)))], 1) if latencies else None
    print(json.dumps({"sent": total, "ok": len(latencies), "failed": failures,
                      "success_pct": round(100 * len(latencies) / max(total, 1), 2),
                      "p50_ms": pct(0.50), "p99_ms": pct(0.99), "max_ms": pct(1.0)}))


async def hold(port, count, seconds, mode):
    streams = []
    opened = []
    for first in range(0, count, 500):
        batch = [asyncio.open_connection(HOST, port) for _ in range(first, min(count, first + 500))]
        opened.extend(r for r in await asyncio.gather(*batch, return_exceptions=True)
                      if not isinstance(r, BaseException))
    for i, (reader, writer) in enumerate(opened):
        if mode == "trickle":
            writer.write(b"POST /checkout?user_id=t&id=x HTTP/1.1\r\nHost: b\r\n"
                         b"Transfer-Encoding: chunked\r\n\r\n")
        elif i % 2 == 0:
            writer.write(REQUEST)  # answered, then left idle
        streams.append(writer)
    # slow_clients.sh waits for this line before it starts measuring.
    print(json.dumps({"ready": len(streams)}), file=sys.stderr, flush=True)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        await asyncio.sleep(1)
        if mode == "trickle":
            for writer in streams:
                if not writer.is_closing():
                    writer.write(b"1\r\na\r\n")
    closed = sum(1 for w in streams if w.is_closing() or w.transport.get_write_buffer_size() > 0)
    print(json.dumps({"mode": mode, "opened": len(streams), "closed_or_stuck": closed}), file=sys.stderr)


def main():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    mode, port = sys.argv[1], int(sys.argv[2])
    if mode == "legit":
        asyncio.run(legit(port, float(sys.argv[3]), float(sys.argv[4])))
    else:
        asyncio.run(hold(port, int(sys.argv[3]), float(sys.argv[4]), mode))


if __name__ == "__main__":
    main()
