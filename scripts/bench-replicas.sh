#!/usr/bin/env bash
# Scale-out benchmark (docs/BENCHMARKS.md, "Scale-out"): the load generator
# of scripts/bench.sh (benches/load.rs) against
#   1. one replica with the local (in-process) state,
#   2. one replica with its state in Redis (one store round trip per call),
#   3. two replicas sharing Redis behind HAProxy in TCP mode (mTLS through),
# each at one call in flight (latency: the p50 the round trip adds) and at
# 4 connections x 16 calls in flight (throughput). Prints one table with
# ratios, all from the same run.
#
# Cores (taskset): runs 1 and 2 put the gateway alone on SERVER_CPU and the
# load generator and redis-server on LOAD_CPU; run 3 puts replica A on
# SERVER_CPU and replica B on LOAD_CPU, and the load generator, HAProxy and
# redis-server on both (a 2-core machine has no third core for them). The
# table also gives calls per second per second of gateway CPU, which does
# not depend on how the cores were shared.
#
#   ./scripts/bench-replicas.sh               # 10 s runs
#   SECS=5 ./scripts/bench-replicas.sh
#
# Needs: cargo, python3, taskset; installs redis-server and haproxy with
# apt-get when missing. Results: target/bench/replicas-<time>/results.jsonl.
set -euo pipefail
cd "$(dirname "$0")/.."

SECS=${SECS:-10}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}

if ! command -v redis-server >/dev/null 2>&1 || ! { command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ]; }; then
  echo "== installing redis-server and haproxy"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server haproxy >/dev/null
fi
HAPROXY=$(command -v haproxy || echo /usr/sbin/haproxy)

echo "== building (release)"
cargo build --release --bin sealgate 2>&1 | tail -1
LOAD=$(cargo bench --bench load --no-run --message-format=json 2>/dev/null \
  | python3 -c 'import json,sys
for l in sys.stdin:
    m=json.loads(l)
    if m.get("reason")=="compiler-artifact" and m.get("executable") and m["target"]["name"]=="load": print(m["executable"])' | tail -1)
[ -x "$LOAD" ] || { echo "load generator not built"; exit 1; }
SEALGATE=target/release/sealgate

W=$(pwd)/target/bench/replicas-$(date +%Y%m%d-%H%M%S)
mkdir -p "$W"
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
PORT_A=$(free_port); PORT_B=$(free_port); PORT_LB=$(free_port); PORT_REDIS=$(free_port)

PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

wait_port() {
  for _ in $(seq 1 200); do
    python3 -c "import socket,sys;s=socket.socket();sys.exit(s.connect_ex(('127.0.0.1',$1)))" && return 0
    sleep 0.05
  done
  echo "port $1 did not open"; exit 1
}

ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
"$LOAD" setup "$W/dev" "$PORT_A" >/dev/null
DEMO="$W/dev/clients/demo.profile.toml"
STATE="
[state]
kind = \"redis\"
url = \"redis://127.0.0.1:$PORT_REDIS/0\"
# a new store for this run: nothing to replay, no cold-start wait
persistent = true
"
cp "$W/dev/sealgate.toml" "$W/dev/local.toml"
{ cat "$W/dev/sealgate.toml"; echo "$STATE"; } >"$W/dev/redis-a.toml"
sed "s/127.0.0.1:$PORT_A/127.0.0.1:$PORT_B/" "$W/dev/redis-a.toml" >"$W/dev/redis-b.toml"

taskset -c "$LOAD_CPU" redis-server --port "$PORT_REDIS" --bind 127.0.0.1 --save '' --appendonly no \
  --dir "$W" --logfile "$W/redis.log" &
PIDS+=("$!")
wait_port "$PORT_REDIS"

R="$W/results.jsonl"
load() { "$@" | tee -a "$R" | python3 -c 'import json,sys
r=json.loads(sys.stdin.read()); print("   %-30s %9.0f/s  server cpu/call %6.1f us  p50 %6d us  p99 %6d us  %s" % (r["label"], r["rps"], r["server_cpu_per_call_us"], r["p50_us"], r["p99_us"], r["by_reason"]))'; }

# serve CPUS CONFIG: starts a gateway pinned to CPUS; prints its pid.
serve() {
  taskset -c "$1" "$SEALGATE" serve --config "$2" >>"$W/sealgate.log" 2>&1 &
  echo $!
}
stop() {
  kill "$@" 2>/dev/null || true
  for p in "$@"; do while kill -0 "$p" 2>/dev/null; do sleep 0.1; done; done
}

# measure LABEL ENDPOINT PIDS LOAD_CPUS
measure() {
  load taskset -c "$4" "$LOAD" run --profile "$DEMO" --endpoint "$2" --pids "$3" --conns 1 --inflight 1 \
    --secs "$SECS" --verify-every 64 --max-rate 20000 --label "$1 latency"
  load taskset -c "$4" "$LOAD" run --profile "$DEMO" --endpoint "$2" --pids "$3" --conns 4 --inflight 16 \
    --secs "$SECS" --verify-every 64 --max-rate 30000 --label "$1 throughput"
}

echo "== 1. one replica, local state: gateway on core $SERVER_CPU, load generator on core $LOAD_CPU"
PID_A=$(serve "$SERVER_CPU" "$W/dev/local.toml"); PIDS+=("$PID_A"); wait_port "$PORT_A"; sleep 0.3
measure "one local" "localhost:$PORT_A" "$PID_A" "$LOAD_CPU"
stop "$PID_A"

echo "== 2. one replica, state in Redis: gateway on core $SERVER_CPU, load generator and redis-server on core $LOAD_CPU"
PID_A=$(serve "$SERVER_CPU" "$W/dev/redis-a.toml"); PIDS+=("$PID_A"); wait_port "$PORT_A"; sleep 0.3
measure "one redis" "localhost:$PORT_A" "$PID_A" "$LOAD_CPU"

echo "== 3. two replicas sharing Redis behind HAProxy: A on core $SERVER_CPU, B on core $LOAD_CPU; load generator, HAProxy and redis-server on both"
PID_B=$(serve "$LOAD_CPU" "$W/dev/redis-b.toml"); PIDS+=("$PID_B"); wait_port "$PORT_B"
cat >"$W/haproxy.cfg" <<EOF
global
  maxconn 4000
  nbthread 1
defaults
  mode tcp
  timeout connect 5s
  timeout client 120s
  timeout server 120s
frontend gateway
  bind 127.0.0.1:$PORT_LB
  default_backend replicas
backend replicas
  balance roundrobin
  server a 127.0.0.1:$PORT_A
  server b 127.0.0.1:$PORT_B
EOF
"$HAPROXY" -db -f "$W/haproxy.cfg" >"$W/haproxy.log" 2>&1 &
PIDS+=("$!")
wait_port "$PORT_LB"; sleep 0.3
measure "two redis haproxy" "localhost:$PORT_LB" "$PID_A,$PID_B" "$SERVER_CPU,$LOAD_CPU"

python3 - "$R" "$SECS" <<'EOF'
import json, sys
rows = {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    rows[r["label"]] = r
def g(label, key, default=0):
    return rows.get(label, {}).get(key, default)
base = g("one local throughput", "rps")
print()
print("| set-up | req/s (4x16) | vs one local | req/s per gateway CPU-second | p50 / p99 at 1 in flight | p50 added vs one local |")
print("|---|---|---|---|---|---|")
names = {"one local": "one replica, local state", "one redis": "one replica, Redis", "two redis haproxy": "two replicas, Redis, HAProxy"}
for key, name in names.items():
    tp = g(f"{key} throughput", "rps")
    cpu = g(f"{key} throughput", "server_cpu_per_call_us")
    p50, p99 = g(f"{key} latency", "p50_us"), g(f"{key} latency", "p99_us")
    print(f"| {name} | {tp:,.0f} | {tp / base if base else 0:.2f}x | {1e6 / cpu if cpu else 0:,.0f} | {p50} / {p99} us | {p50 - g('one local latency', 'p50_us'):+d} us |")
one, two = g("one redis throughput", "rps"), g("two redis haproxy throughput", "rps")
c1, c2 = g("one redis throughput", "server_cpu_per_call_us"), g("two redis haproxy throughput", "server_cpu_per_call_us")
print()
print(f"two replicas vs one (both on Redis): {two / one if one else 0:.2f}x measured; "
      f"{(c1 / c2) * 2 if c2 else 0:.2f}x in capacity (each replica on a core of its own, from CPU per call)")
print(f"store round trip at 1 in flight: +{g('one redis latency', 'p50_us') - g('one local latency', 'p50_us')} us at p50")
bad = {k: v for r in rows.values() for k, v in r.get("by_reason", {}).items() if k != "OK"}
print(f"refusals: {bad or 'none'}; responses verified: {sum(r.get('verified', 0) for r in rows.values())}, failed: {sum(r.get('verify_failed', 0) for r in rows.values())}")
EOF
echo "results: $R"
