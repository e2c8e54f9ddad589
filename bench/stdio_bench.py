#!/usr/bin/env python3
"""Benchmark of the pdchannels MCP server over stdio (standard library only).

What it measures, against one pdchannels binary:

  a. Start-up: wall time from spawning `pdchannels --db <file> mcp` to reading the reply to
     `initialize`, over --spawns runs (after 3 warm-up runs), both with a fresh database
     (a new temporary directory per run, so the server creates the schema) and with an
     existing database (one file created beforehand and reused). Reports median, p90 and
     min in ms.
  b. Throughput: after initialize + notifications/initialized + one channels_create, --calls
     sequential `tools/call channels_receive_message` requests, each sent only after the
     previous reply arrived, with distinct message ids spread over --conversations
     conversations. Reports calls/s and p50/p99/max latency in ms, and checks that every
     reply is a result with isError false.
  c. Memory: VmRSS and VmHWM of the server process from /proc/PID/status, right after
     initialize and after the calls, in MB (1 MB = 2^20 bytes).

It prints a human summary and, as its last line, one JSON object with all figures. It exits
non-zero if any call failed (or the server misbehaved).

Run it from anywhere (the repository root is found from this file's path):

    cargo build --release -p pdchannels
    python3 bench/stdio_bench.py                              # release binary, 50 spawns, 10,000 calls
    python3 bench/stdio_bench.py --bin target/debug/pdchannels --calls 2000 --spawns 10
"""

from __future__ import annotations

import argparse
import json
import math
import os
import select
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
PROTOCOL_VERSION = "2025-11-25"
WARMUP_SPAWNS = 3
CHANNEL_ID = "bench-channel"
REPLY_TIMEOUT_S = 30.0


class BenchError(Exception):
    """The server did something the benchmark cannot go on from."""


# --- talking to one server process -----------------------------------------------------------


class Server:
    """One `pdchannels --db DB mcp` process spoken to with newline-delimited JSON-RPC."""

    def __init__(self, binary: Path, db: Path, stderr_path: Path):
        self._stderr = open(stderr_path, "wb")
        self.stderr_path = stderr_path
        self.proc = subprocess.Popen(
            [str(binary), "--db", str(db), "mcp"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            bufsize=0,
        )
        self._out_fd = self.proc.stdout.fileno()
        self._buf = bytearray()
        self._next_id = 0

    # Raw line I/O: our own buffer plus select(), so a hung server cannot hang the benchmark.
    def send(self, message: dict) -> None:
        self.proc.stdin.write(json.dumps(message, separators=(",", ":")).encode() + b"\n")

    def read_line(self, timeout: float = REPLY_TIMEOUT_S) -> bytes:
        deadline = time.monotonic() + timeout
        while True:
            nl = self._buf.find(b"\n")
            if nl >= 0:
                line = bytes(self._buf[:nl])
                del self._buf[: nl + 1]
                return line
            left = deadline - time.monotonic()
            if left <= 0:
                raise BenchError(f"no reply from the server within {timeout:.0f} s")
            ready, _, _ = select.select([self._out_fd], [], [], left)
            if ready:
                chunk = os.read(self._out_fd, 1 << 16)
                if not chunk:
                    raise BenchError(f"the server closed stdout (exit code {self.proc.poll()}); {self.stderr_tail()}")
                self._buf += chunk

    def request(self, method: str, params: dict | None = None) -> dict:
        """Send a request and return its response, skipping any notifications in between."""
        self._next_id += 1
        rid = self._next_id
        message = {"jsonrpc": "2.0", "id": rid, "method": method}
        if params is not None:
            message["params"] = params
        self.send(message)
        while True:
            reply = json.loads(self.read_line())
            if reply.get("id") == rid:
                return reply
            if "id" in reply and "method" not in reply:
                raise BenchError(f"reply to an unknown request: {reply}")

    def notify(self, method: str) -> None:
        self.send({"jsonrpc": "2.0", "method": method})

    def memory_mb(self) -> dict:
        """VmRSS and VmHWM of the server process, in MB."""
        figures = {}
        with open(f"/proc/{self.proc.pid}/status") as status:
            for line in status:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    figures[key] = round(int(value.split()[0]) / 1024, 2)  # kB -> MB
        return figures

    def stderr_tail(self, chars: int = 2000) -> str:
        try:
            text = self.stderr_path.read_text(errors="replace")
        except OSError:
            return "no stderr"
        return "stderr: " + (text[-chars:].strip() or "(empty)")

    def close(self) -> None:
        """Close stdin (the server exits on EOF); kill it if it does not within 5 s."""
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()
        self._stderr.close()


def initialize_params() -> dict:
    return {
        "protocolVersion": PROTOCOL_VERSION,
        "capabilities": {},
        "clientInfo": {"name": "pdchannels-stdio-bench", "version": "1.0"},
    }


def check_initialize(reply: dict) -> None:
    result = reply.get("result")
    if not result or result.get("protocolVersion") != PROTOCOL_VERSION:
        raise BenchError(f"unexpected initialize reply: {reply}")


# --- statistics ------------------------------------------------------------------------------


def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return float("nan")
    rank = max(1, min(len(sorted_values), math.ceil(p / 100 * len(sorted_values))))
    return sorted_values[rank - 1]


def summarize_ms(samples_s: list[float]) -> dict:
    ms = sorted(s * 1000 for s in samples_s)
    return {
        "median_ms": round(statistics.median(ms), 3),
        "p90_ms": round(percentile(ms, 90), 3),
        "min_ms": round(ms[0], 3),
        "max_ms": round(ms[-1], 3),
        "runs": len(ms),
    }


# --- a. start-up -----------------------------------------------------------------------------


def time_one_spawn(binary: Path, db: Path, workdir: Path) -> float:
    """Seconds from Popen to reading the initialize reply line."""
    start = time.perf_counter()
    server = Server(binary, db, workdir / "spawn.stderr")
    try:
        server.send({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": initialize_params()})
        line = server.read_line()
        elapsed = time.perf_counter() - start
        check_initialize(json.loads(line))
        return elapsed
    finally:
        server.close()


def bench_spawns(binary: Path, runs: int) -> dict:
    results = {}
    with tempfile.TemporaryDirectory(prefix="pdchannels-bench-") as tmp:
        tmp = Path(tmp)

        def fresh() -> float:
            with tempfile.TemporaryDirectory(dir=tmp) as run_dir:
                return time_one_spawn(binary, Path(run_dir) / "bench.db", Path(run_dir))

        shared_db = tmp / "shared.db"
        # Create the shared database once, with a channel in it, before timing anything.
        server = Server(binary, shared_db, tmp / "setup.stderr")
        try:
            check_initialize(server.request("initialize", initialize_params()))
            server.notify("notifications/initialized")
            expect_success(server.request("tools/call", create_channel_params()), "channels_create")
        finally:
            server.close()

        def existing() -> float:
            return time_one_spawn(binary, shared_db, tmp)

        for label, one_run in (("fresh_db", fresh), ("existing_db", existing)):
            for _ in range(WARMUP_SPAWNS):
                one_run()
            results[label] = summarize_ms([one_run() for _ in range(runs)])
    return results


# --- b. and c. sequential calls and memory ---------------------------------------------------


def create_channel_params() -> dict:
    return {
        "name": "channels_create",
        "arguments": {"name": "Bench channel", "provider_channel_id": CHANNEL_ID, "provider_type": "whatsapp"},
    }


def receive_params(i: int, conversations: int) -> dict:
    return {
        "name": "channels_receive_message",
        "arguments": {
            "id": f"bench-msg-{i:07d}",
            "channel_id": CHANNEL_ID,
            "sender_id": f"bench-sender-{i % 7}",
            "conversation_id": f"bench-conv-{i % conversations:04d}",
            "message": f"Benchmark message number {i}.",
            "status": "sent",
            "created_at": "2024-05-01T10:20:30.000Z",
        },
    }


def expect_success(reply: dict, what: str) -> None:
    result = reply.get("result")
    if result is None or result.get("isError") is not False:
        raise BenchError(f"{what} failed: {json.dumps(reply)[:1000]}")


def bench_calls(binary: Path, calls: int, conversations: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="pdchannels-bench-") as tmp:
        tmp = Path(tmp)
        server = Server(binary, tmp / "bench.db", tmp / "calls.stderr")
        try:
            check_initialize(server.request("initialize", initialize_params()))
            server.notify("notifications/initialized")
            expect_success(server.request("tools/call", create_channel_params()), "channels_create")
            memory_before = server.memory_mb()

            latencies = []
            failures = 0
            first_failure = None
            clock = time.perf_counter
            started = clock()
            for i in range(calls):
                t0 = clock()
                reply = server.request("tools/call", receive_params(i, conversations))
                latencies.append(clock() - t0)
                result = reply.get("result")
                if result is None or result.get("isError") is not False:
                    failures += 1
                    first_failure = first_failure or json.dumps(reply)[:1000]
            total = clock() - started
            memory_after = server.memory_mb()
        except BenchError as err:
            raise BenchError(f"{err}; {server.stderr_tail()}") from err
        finally:
            server.close()

    ms = sorted(s * 1000 for s in latencies)
    return {
        "calls": calls,
        "conversations": conversations,
        "failed": failures,
        "first_failure": first_failure,
        "seconds": round(total, 3),
        "calls_per_s": round(calls / total, 1) if total > 0 else None,
        "p50_ms": round(percentile(ms, 50), 3),
        "p99_ms": round(percentile(ms, 99), 3),
        "max_ms": round(ms[-1], 3) if ms else None,
        "memory_after_init_mb": memory_before,
        "memory_after_calls_mb": memory_after,
    }


# --- main ------------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--bin",
        type=Path,
        default=REPO_ROOT / "target" / "release" / "pdchannels",
        help="pdchannels binary (default: target/release/pdchannels in the repository)",
    )
    parser.add_argument("--spawns", type=int, default=50, help="timed spawns per database kind (default 50)")
    parser.add_argument("--calls", type=int, default=10_000, help="sequential receive_message calls (default 10000)")
    parser.add_argument("--conversations", type=int, default=100, help="conversations to spread calls over (default 100)")
    args = parser.parse_args(argv)
    if args.spawns < 1 or args.calls < 1 or args.conversations < 1:
        parser.error("--spawns, --calls and --conversations must be at least 1")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    binary = args.bin if args.bin.is_absolute() else Path.cwd() / args.bin
    if not os.access(binary, os.X_OK):
        print(f"stdio_bench: no executable at {binary} (build with: cargo build --release -p pdchannels)", file=sys.stderr)
        return 2

    print(f"pdchannels stdio benchmark: {binary}")
    print(f"  machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
    try:
        print(f"\n[a] spawn -> initialize reply ({WARMUP_SPAWNS} warm-up + {args.spawns} timed runs each)", flush=True)
        spawns = bench_spawns(binary, args.spawns)
        for label, s in spawns.items():
            print(
                f"  {label.replace('_', ' '):12}  median {s['median_ms']:8.2f} ms   p90 {s['p90_ms']:8.2f} ms"
                f"   min {s['min_ms']:8.2f} ms"
            )

        print(f"\n[b] {args.calls} sequential channels_receive_message calls over {args.conversations} conversations", flush=True)
        calls = bench_calls(binary, args.calls, args.conversations)
    except BenchError as err:
        print(f"\nstdio_bench: FAILED: {err}", file=sys.stderr)
        print(json.dumps({"binary": str(binary), "error": str(err)}))
        return 1

    print(f"  {calls['calls_per_s']:.1f} calls/s ({calls['seconds']:.2f} s in all)")
    print(f"  latency p50 {calls['p50_ms']:.3f} ms   p99 {calls['p99_ms']:.3f} ms   max {calls['max_ms']:.3f} ms")
    print(f"  failed calls: {calls['failed']}" + (f"  first: {calls['first_failure']}" if calls["failed"] else ""))
    before, after = calls["memory_after_init_mb"], calls["memory_after_calls_mb"]
    print("\n[c] server memory (MB = 2^20 bytes)")
    print(f"  after initialize   VmRSS {before.get('VmRSS', float('nan')):7.2f} MB   VmHWM {before.get('VmHWM', float('nan')):7.2f} MB")
    print(f"  after {args.calls:>6} calls VmRSS {after.get('VmRSS', float('nan')):7.2f} MB   VmHWM {after.get('VmHWM', float('nan')):7.2f} MB")

    figures = {
        "binary": str(binary),
        "spawn_fresh_db": spawns["fresh_db"],
        "spawn_existing_db": spawns["existing_db"],
        "calls": {k: v for k, v in calls.items() if not k.startswith("memory")},
        "memory_mb": {"after_initialize": before, "after_calls": after},
    }
    print(json.dumps(figures, separators=(",", ":")))
    return 0 if calls["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
