#!/usr/bin/env bash
# `pdchannels db copy` throughput: a SQLite hub of N messages (default 1,000,000, over 10,000
# conversations of 4 channels, 3 senders each) copied into a fresh PostgreSQL database.
#
# The SQLite database is made by pdchannels itself (`channels create`, which runs the
# migrations), then filled by python3's sqlite3 module with plain INSERTs into messages: the
# schema's own triggers create the conversations and participants (message_count, activity,
# join order), exactly as the hub would. The copy is timed alone (the fill is not), and the
# figure is messages per second and all rows per second.
#
# Usage: bench/db_copy.sh [BIN]   (default: target/release/pdchannels, built first)
# Env: DB_COPY_BENCH_N (1000000), DB_COPY_BENCH_CONVERSATIONS (10000),
#      DB_COPY_BENCH_POSTGRES (postgres://postgres@127.0.0.1:5432/postgres: an admin URL; a
#      database pdc_bench_copy_PID is created there and dropped at the end),
#      DB_COPY_BENCH_KEEP=1 keeps the temporary directory and the database.
# Needs python3, psql. Ends with a line `JSON {...}`.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
if [[ $# -ge 1 ]]; then
    bin="$1"
else
    (cd "$root" && cargo build --release -p pdchannels --quiet)
    bin="$root/target/release/pdchannels"
fi
n="${DB_COPY_BENCH_N:-1000000}"
conversations="${DB_COPY_BENCH_CONVERSATIONS:-10000}"
admin="${DB_COPY_BENCH_POSTGRES:-postgres://postgres@127.0.0.1:5432/postgres}"
name="pdc_bench_copy_$$"
target="${admin%/*}/$name"

dir="$(mktemp -d)"
cleanup() {
    if [[ "${DB_COPY_BENCH_KEEP:-0}" != 1 ]]; then
        rm -rf "$dir"
        psql -q "$admin" -c "DROP DATABASE IF EXISTS $name WITH (FORCE)" >/dev/null 2>&1 || true
    else
        echo "kept $dir and $target" >&2
    fi
}
trap cleanup EXIT

src="$dir/channels.db"
for ch in 1 2 3 4; do
    "$bin" --db "$src" channels create --id "wa-$ch" --name "Bench $ch" >/dev/null 2>&1
done

echo "filling $src with $n messages over $conversations conversations..." >&2
fill_start=$(date +%s.%N)
python3 - "$src" "$n" "$conversations" <<'EOF'
import json, sqlite3, sys
path, n, conversations = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
db = sqlite3.connect(path)
db.execute("PRAGMA synchronous = OFF")
channels = [pk for (pk,) in db.execute("SELECT pk FROM channels ORDER BY pk")]
statuses = ["sent", "delivered", "read", "failed"]
base = 1_700_000_000_000
def rows():
    for i in range(n):
        c = i % conversations
        channel = channels[c % len(channels)]
        conversation = f"conv-{c}"
        sender = f"sender-{(i // conversations) % 3}"
        at = base + i * 10
        mid = f"m-{i}"
        payload = json.dumps({
            "id": mid, "channel_id": f"wa-{channel}", "conversation_id": conversation,
            "sender_id": sender, "message": f"Hello \"there\", message {i}: a line of text\nand another",
            "status": statuses[i % 4], "created_at": "2023-11-14T22:13:20Z",
            "attachments": [],
        }, separators=(",", ":"), ensure_ascii=False)
        yield (channel, mid, conversation, sender, statuses[i % 4], at, at, at, payload)
db.execute("BEGIN")
db.executemany(
    "INSERT INTO messages (channel_pk, message_id, conversation_id, sender_id, status,"
    " created_at_ms, received_at_ms, updated_at_ms, payload) VALUES (?,?,?,?,?,?,?,?,?)",
    rows())
db.commit()
db.close()
EOF
fill_end=$(date +%s.%N)
echo "filled in $(python3 -c "print(round($fill_end - $fill_start, 1))") s ($(du -h "$src" | cut -f1))" >&2

psql -q "$admin" -c "CREATE DATABASE $name" >/dev/null
start=$(date +%s.%N)
"$bin" db copy --from "$src" --to "$target" >"$dir/summary.json"
end=$(date +%s.%N)
python3 - "$dir/summary.json" "$start" "$end" <<'EOF'
import json, sys
summary = json.load(open(sys.argv[1]))
seconds = float(sys.argv[3]) - float(sys.argv[2])
rows = sum(t["rows"] for t in summary["tables"])
messages = next(t["rows"] for t in summary["tables"] if t["table"] == "messages")
print(f"copied {messages:,} messages ({rows:,} rows, {summary['payload_bytes']:,} payload bytes) "
      f"in {seconds:.1f} s: {messages / seconds:,.0f} messages/s, {rows / seconds:,.0f} rows/s")
print("JSON " + json.dumps({"messages": messages, "rows": rows, "seconds": round(seconds, 2),
                            "messages_per_s": round(messages / seconds),
                            "rows_per_s": round(rows / seconds)}))
EOF
