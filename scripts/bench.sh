#!/usr/bin/env bash
# The load benchmark (docs/BENCHMARKS.md): sealgate, nginx as a TLS 1.3 mTLS
# grpc_pass proxy (its peer: signs and checks nothing), and a plain TLS 1.3
# mTLS gRPC echo (the floor), each alone on one core, driven by
# benches/load.rs from the other core. Prints one table with ratios: these
# machines are shared, so absolute figures drift from run to run.
#
#   ./scripts/bench.sh                 # 10 s runs
#   SECS=5 IDLE_CONNS=2000 ./scripts/bench.sh
#   SHAPES="flood" ./scripts/bench.sh   # some shapes only: latency
#                                      # (with throughput), openloop, flood, idle
#
# Needs: cargo, python3, taskset (util-linux); installs nginx-light with
# apt-get when missing. Results: target/bench/<run>/results.jsonl.
set -euo pipefail
cd "$(dirname "$0")/.."

SECS=${SECS:-10}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
IDLE_CONNS=${IDLE_CONNS:-10000}
SHAPES=${SHAPES:-latency openloop flood idle}
shape() { case " $SHAPES " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
  echo "== installing nginx-light (the benchmark's peer)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >/dev/null
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

echo "== building (release)"
cargo build --release --bin sealgate 2>&1 | tail -1
LOAD=$(cargo bench --bench load --no-run --message-format=json 2>/dev/null \
  | python3 -c 'import json,sys
for l in sys.stdin:
    m=json.loads(l)
    if m.get("reason")=="compiler-artifact" and m.get("executable") and m["target"]["name"]=="load": print(m["executable"])' | tail -1)
[ -x "$LOAD" ] || { echo "load generator not built"; exit 1; }
SEALGATE=${SEALGATE_BIN:-target/release/sealgate}

W=$(pwd)/target/bench/run-$(date +%Y%m%d-%H%M%S)
mkdir -p "$W"
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
PORT_GW=$(free_port); PORT_ECHO=$(free_port); PORT_UP=$(free_port); PORT_NG=$(free_port)

PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -f "$W/nginx.pid" ] && kill "$(cat "$W/nginx.pid")" 2>/dev/null || true
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
"$LOAD" setup "$W/dev" "$PORT_GW" >/dev/null
DEMO="$W/dev/clients/demo.profile.toml"

echo "== starting servers: each on core $SERVER_CPU; the load generator on core $LOAD_CPU"
taskset -c "$SERVER_CPU" "$SEALGATE" serve --config "$W/dev/sealgate.toml" >"$W/sealgate.log" 2>&1 &
PID_GW=$!; PIDS+=("$PID_GW")
taskset -c "$SERVER_CPU" "$LOAD" echo --listen "127.0.0.1:$PORT_ECHO" --tls "$W/dev" >"$W/echo.log" 2>&1 &
PID_ECHO=$!; PIDS+=("$PID_ECHO")
# nginx's upstream runs on the load generator's core: only nginx is measured.
taskset -c "$LOAD_CPU" "$LOAD" echo --listen "127.0.0.1:$PORT_UP" >"$W/upstream.log" 2>&1 &
PIDS+=("$!")
cat >"$W/nginx.conf" <<EOF
worker_processes 1;
worker_rlimit_nofile 65536;
daemon off;
pid $W/nginx.pid;
error_log $W/nginx.err warn;
events { worker_connections 16384; }
http {
  access_log off;
  client_body_temp_path $W/nginx-body;
  proxy_temp_path $W/nginx-proxy;
  # No recycling of client or upstream connections every 1000 requests.
  keepalive_requests 100000000;
  upstream echo { server 127.0.0.1:$PORT_UP; keepalive 64; keepalive_requests 100000000; }
  server {
    listen 127.0.0.1:$PORT_NG ssl http2;
    ssl_certificate $W/dev/server.crt;
    ssl_certificate_key $W/dev/server.key;
    ssl_protocols TLSv1.3;
    ssl_client_certificate $W/dev/ca/ca.crt;
    ssl_crl $W/dev/ca/crl.pem;
    ssl_verify_client on;
    ssl_session_tickets off;
    location / { grpc_pass grpc://echo; }
  }
}
EOF
taskset -c "$SERVER_CPU" "$NGINX" -c "$W/nginx.conf" -p "$W" >"$W/nginx.log" 2>&1 &
PIDS+=("$!")
wait_port "$PORT_GW"; wait_port "$PORT_ECHO"; wait_port "$PORT_UP"; wait_port "$PORT_NG"
sleep 0.5
PID_NGINX_WORKERS=$(pgrep -d, -P "$(cat "$W/nginx.pid")")

R="$W/results.jsonl"
load() { taskset -c "$LOAD_CPU" "$LOAD" run "$@" | tee -a "$R" | python3 -c 'import json,sys
r=json.loads(sys.stdin.read()); print("   %-28s %9.0f/s  cpu/call %6.1f us  p50 %6d us  p99 %6d us  %s" % (r["label"], r["rps"], r["server_cpu_per_call_us"], r["p50_us"], r["p99_us"], r["by_reason"]))'; }

if shape latency; then
echo "== one call in flight (latency), then 4 connections x 16 in flight (throughput), ${SECS} s each"
for t in echo nginx sealgate; do
  case $t in
    echo) EP="localhost:$PORT_ECHO"; P=$PID_ECHO; V=0; M=60000 ;;
    nginx) EP="localhost:$PORT_NG"; P=$PID_NGINX_WORKERS; V=0; M=30000 ;;
    sealgate) EP="localhost:$PORT_GW"; P=$PID_GW; V=64; M=30000 ;;
  esac
  load --profile "$DEMO" --endpoint "$EP" --pids "$P" --conns 1 --inflight 1 --secs "$SECS" --verify-every "$V" --max-rate 20000 --label "$t latency"
  load --profile "$DEMO" --endpoint "$EP" --pids "$P" --conns 4 --inflight 16 --secs "$SECS" --verify-every "$V" --max-rate "$M" --label "$t throughput"
done
fi

if shape openloop; then
# Each server at 50% and 80% of its own maximum (the throughput shape of
# this run), calls on a fixed schedule: p50/p99/p99.9 from the scheduled
# time, so a stall counts for every call it held back.
for t in nginx sealgate; do
  MAX=$(python3 -c "import json
for l in open('$R'):
    r=json.loads(l)
    if r['label']=='$t throughput': print(int(r['rps']))" 2>/dev/null || true)
  MAX=${MAX:-4000}
  case $t in
    nginx) EP="localhost:$PORT_NG"; P=$PID_NGINX_WORKERS; V=0 ;;
    sealgate) EP="localhost:$PORT_GW"; P=$PID_GW; V=64 ;;
  esac
  for pct in 50 80; do
    echo "== $t open loop at ${pct}% of its maximum ($((MAX * pct / 100))/s)"
    load --profile "$DEMO" --endpoint "$EP" --pids "$P" --conns 4 --rate $((MAX * pct / 100)) --secs "$SECS" --verify-every "$V" --label "$t open loop $pct"
  done
done
fi

if shape flood; then
STEADY_PROFILE="$W/dev/clients/steady.profile.toml"
echo "== the steady identity alone, at 450/s (its rate: 500/s)"
load --profile "$STEADY_PROFILE" --pids "$PID_GW" --conns 1 --rate 450 --secs "$SECS" --verify-every 16 --label "steady alone"
echo "== a flood: one identity limited to 5/s sending as fast as it can (4 connections x 16 in flight), the steady identity beside it"
taskset -c "$LOAD_CPU" "$LOAD" run --profile "$STEADY_PROFILE" --conns 1 --rate 450 --secs "$SECS" --verify-every 16 --label "steady beside flood" >>"$R" &
STEADY=$!
load --profile "$W/dev/clients/flood.profile.toml" --pids "$PID_GW" --conns 4 --inflight 16 --max-rate 100000 --wrap 5000 --secs "$SECS" --label "flood"
wait "$STEADY"
fi

if shape idle; then
echo "== $IDLE_CONNS idle mTLS connections"
taskset -c "$LOAD_CPU" "$LOAD" idle --profile "$DEMO" --conns "$IDLE_CONNS" --pid "$PID_GW" --label "sealgate idle" | tee -a "$R"
fi

python3 - "$R" <<'EOF'
import json, sys
rows = {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    rows[r["label"]] = r
def g(label, key, default=0):
    return rows.get(label, {}).get(key, default)
echo_tp, nginx_tp, sg_tp = (g(f"{t} throughput", "rps") for t in ("echo", "nginx", "sealgate"))
print()
# Per core: calls a second of the server's own CPU (1 / CPU per call), the
# figure that holds when the load generator's core, not the server's, is
# what limits req/s (nginx and the echo here).
nginx_cpu = g("nginx throughput", "server_cpu_per_call_us")
print("| server on one core | req/s (4x16) | vs nginx | server CPU per call | calls per core-second | per core vs nginx | p50 / p99 at 1 in flight | added p50 vs echo |")
print("|---|---|---|---|---|---|---|---|")
for t in ("echo", "nginx", "sealgate"):
    tp = g(f"{t} throughput", "rps")
    cpu = g(f"{t} throughput", "server_cpu_per_call_us")
    lat50, lat99 = g(f"{t} latency", "p50_us"), g(f"{t} latency", "p99_us")
    print(f"| {t} | {tp:,.0f} | {tp / nginx_tp if nginx_tp else 0:.2f}x | {cpu:.1f} us | {1e6 / cpu if cpu else 0:,.0f} | {nginx_cpu / cpu if cpu else 0:.2f}x | {lat50} / {lat99} us | {lat50 - g('echo latency', 'p50_us')} us |")
print()
for t in ("nginx", "sealgate"):
    for pct in (50, 80):
        ol = rows.get(f"{t} open loop {pct}", {})
        if ol: print(f"{t} open loop at {pct}% of its maximum ({ol.get('rate', 0):,.0f}/s): p50 {ol.get('p50_us')} us, p99 {ol.get('p99_us')} us, p99.9 {ol.get('p999_us')} us, {ol.get('by_reason')}")
fl, st, alone = rows.get("flood", {}), rows.get("steady beside flood", {}), rows.get("steady alone", {})
if fl:
    # What the flood costs: the server's CPU during flood + steady, less
    # its CPU for the steady identity alone (same rate, same length).
    secs = fl.get("secs", 0) or 1
    extra = fl.get("server_cpu_s", 0) - alone.get("server_cpu_s", 0) * secs / (alone.get("secs", 0) or 1)
    refused = fl.get("calls", 0) - fl.get("by_reason", {}).get("OK", 0)
    print(f"flood (limited to 5/s, as fast as it can): {fl.get('calls', 0) / secs:,.0f} answers/s received, {fl.get('by_reason')}")
    print(f"  gateway CPU spent on the flooder: {100 * extra / secs:.1f}% of one core ({extra * 1e6 / max(refused, 1):.1f} us per refusal)")
    p99a, p99f = alone.get("p99_us", 0), st.get("p99_us", 0)
    print(f"  steady identity alone: p50 {alone.get('p50_us')} us, p99 {p99a} us; beside the flood: p50 {st.get('p50_us')} us, p99 {p99f} us ({p99f / p99a if p99a else 0:.2f}x); {st.get('by_reason')}, verified {st.get('verified')} failed {st.get('verify_failed')}")
idle = rows.get("sealgate idle", {})
if idle: print(f"idle: {idle.get('conns')} connections ({idle.get('failed')} failed), RSS +{idle.get('rss_per_conn_kib', 0):.1f} KiB per connection")
v = sum(r.get("verified", 0) for r in rows.values()); f = sum(r.get("verify_failed", 0) for r in rows.values())
print(f"responses verified: {v}, failed verification: {f}")
EOF
echo "results: $R"
