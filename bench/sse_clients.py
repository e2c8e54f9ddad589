"""Holds N live streams (GET /inbox/events) open on one hub and counts what they hear, until
SIGTERM; then writes {"streams": N, "open_at_end": ..., "events": ..., "bytes": ...} to OUT.
Writes OUT.ready once every stream got its first line. COOKIES is a file of session cookies,
one per line, used in turn (the hub allows 16 streams per API token: one login per 16 tabs).

Usage: python3 bench/sse_clients.py HOST:PORT COOKIES N OUT
"""
import asyncio
import json
import signal
import sys

addr, cookies_file, n, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
cookies = [line.strip() for line in open(cookies_file) if line.strip()]
host, port = addr.rsplit(":", 1)
stats = {"streams": n, "open_at_end": 0, "events": 0, "bytes": 0, "failed": 0}


async def stream(ready, cookie):
    try:
        reader, writer = await asyncio.open_connection(host, int(port))
    except OSError:
        stats["failed"] += 1
        ready.release()
        return
    writer.write(f"GET /inbox/events HTTP/1.1\r\nHost: {addr}\r\nCookie: {cookie}\r\n"
                 "Accept: text/event-stream\r\n\r\n".encode())
    await writer.drain()
    first = True
    try:
        while True:
            line = await reader.readline()
            if not line:
                break
            if first:
                if b" 200 " not in line:
                    stats["failed"] += 1
                ready.release()
                first = False
            stats["bytes"] += len(line)
            if line.startswith(b"event: change"):
                stats["events"] += 1
    except asyncio.CancelledError:
        stats["open_at_end"] += 1
        raise
    finally:
        writer.close()


async def main():
    ready = asyncio.Semaphore(0)
    tasks = []
    for _ in range(n):
        tasks.append(asyncio.create_task(stream(ready, cookies[len(tasks) % len(cookies)])))
        await asyncio.sleep(0)
    for _ in range(n):
        await ready.acquire()
    open(out + ".ready", "w").write("ready\n")
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    json.dump(stats, open(out, "w"))


asyncio.run(main())
