#!/usr/bin/env python3
"""A day of WhatsApp conversations, compressed, sent to a hub's receive route (bench/mirror.sh a).

1,000 conversations (--conversations) of 20 messages (--messages) each over one day
(2026-11-23 UTC): each conversation has 3 sessions at random times of the day, and a session's
messages alternate customer and company, 10 to 90 s apart, as a chat does. The day is played
--speed times faster (240: 24 h in 6 minutes): each message is posted when its time comes, with
its own created_at. The customer of conversation i is 55119{i:08}@s.whatsapp.net, the number
bench/../examples/pipedrive_api gives person i, so every conversation is linked.

Prints a JSON line: messages sent, non-2xx answers, how late the sends ran (max, s).
"""

import argparse
import datetime
import http.client
import json
import queue
import random
import threading
import time

DAY = 86_400


def schedule(conversations, messages, seed):
    rng = random.Random(seed)
    plan = []
    for c in range(conversations):
        sizes = [messages // 3 + (1 if k < messages % 3 else 0) for k in range(3)]
        starts = sorted(rng.uniform(0, DAY - 3_600) for _ in range(3))
        n = 0
        for start, size in zip(starts, sizes):
            at = start
            for k in range(size):
                plan.append((at, c, n, k % 2 == 1))
                n += 1
                at += rng.uniform(10, 90)
    plan.sort()
    return plan


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--hub", required=True, help="host:port")
    p.add_argument("--token", required=True)
    p.add_argument("--conversations", type=int, default=1000)
    p.add_argument("--messages", type=int, default=20)
    p.add_argument("--speed", type=float, default=240)
    p.add_argument("--threads", type=int, default=8)
    p.add_argument("--seed", type=int, default=7)
    args = p.parse_args()
    day = datetime.datetime(2026, 11, 23, tzinfo=datetime.timezone.utc)
    plan = schedule(args.conversations, args.messages, args.seed)
    work = queue.Queue()
    stats = {"sent": 0, "non2xx": 0, "late_s": 0.0}
    lock = threading.Lock()
    host, port = args.hub.split(":")

    def sender():
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        while True:
            item = work.get()
            if item is None:
                return
            at, c, n, ours = item
            customer = f"55119{c:08d}@s.whatsapp.net"
            body = json.dumps({
                "id": f"d{c}-{n}", "channel_id": "bench", "conversation_id": f"c{c}",
                "sender_id": "bench" if ours else customer,
                "message": f"message {n} of conversation {c}: " + ("we can help" if ours else "I have a question"),
                "status": "sent",
                "created_at": (day + datetime.timedelta(seconds=at)).isoformat().replace("+00:00", "Z"),
            })
            for attempt in range(3):
                try:
                    conn.request("POST", "/v1/channels/messages/receive", body,
                                 {"content-type": "application/json", "x-api-token": args.token})
                    response = conn.getresponse()
                    response.read()
                    status = response.status
                    break
                except (OSError, http.client.HTTPException):
                    conn.close()
                    conn = http.client.HTTPConnection(host, int(port), timeout=30)
                    status = 0
            with lock:
                stats["sent"] += 1
                if not 200 <= status < 300:
                    stats["non2xx"] += 1

    threads = [threading.Thread(target=sender, daemon=True) for _ in range(args.threads)]
    for t in threads:
        t.start()
    began = time.monotonic()
    for item in plan:
        due = began + item[0] / args.speed
        wait = due - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        else:
            stats["late_s"] = max(stats["late_s"], -wait)
        work.put(item)
    for _ in threads:
        work.put(None)
    for t in threads:
        t.join()
    stats["late_s"] = round(stats["late_s"], 3)
    stats["wall_s"] = round(time.monotonic() - began, 1)
    print(json.dumps(stats))


if __name__ == "__main__":
    main()
