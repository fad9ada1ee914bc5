#!/usr/bin/env bash
# Profiles `sealgate serve` (docs/BENCHMARKS.md, "Where a call's CPU goes")
# alone on core 0 under the load benchmark's throughput shape (4
# connections x 16 calls in flight, pre-signed `get_meps`, every 64th
# response verified) driven from core 1, after a 2 s warm-up.
#
#   ./scripts/profile.sh                 # perf record -F 1999 (flat profile)
#   CG=dwarf ./scripts/profile.sh        # with DWARF call graphs (inclusive shares)
#   MODE=strace ./scripts/profile.sh     # strace -c -f: system calls per call
#   SECS=8 SEALGATE_BIN=path ./scripts/profile.sh
#
# Needs the release builds of scripts/bench.sh (run it once), perf or
# strace. Writes target/bench/profile-<time>/: perf.data or strace.txt,
# load.json (calls, CPU per call); prints the folder.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${SECS:-8}
SG=${SEALGATE_BIN:-target/release/sealgate}
LOAD=$(ls -t target/release/deps/load-* 2>/dev/null | grep -v '\.d$' | head -1 || true)
[ -x "$SG" ] && [ -n "$LOAD" ] || { echo "build first: ./scripts/bench.sh (release builds)" >&2; exit 1; }
W=$(pwd)/target/bench/profile-$(date +%Y%m%d-%H%M%S)
mkdir -p "$W"
PORT=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
"$LOAD" setup "$W/dev" "$PORT" >/dev/null
taskset -c 0 "$SG" serve --config "$W/dev/sealgate.toml" >"$W/sealgate.log" 2>&1 &
GW=$!
trap 'kill $GW 2>/dev/null || true' EXIT
for _ in $(seq 1 200); do
  python3 -c "import socket,sys;s=socket.socket();sys.exit(s.connect_ex(('127.0.0.1',$PORT)))" && break
  sleep 0.05
done
run() {
  taskset -c 1 "$LOAD" run --profile "$W/dev/clients/demo.profile.toml" --endpoint "localhost:$PORT" \
    --pids "$GW" --conns 4 --inflight 16 --verify-every 64 --max-rate 30000 "$@"
}
run --secs 2 --label warm-up >/dev/null
P=
case ${MODE:-perf} in
  perf)
    if [ "${CG:-}" = dwarf ]; then cg=(--call-graph dwarf,32768 -F 499); else cg=(-F 1999); fi
    perf record "${cg[@]}" -p "$GW" -o "$W/perf.data" -- sleep $((SECS + 1)) 2>/dev/null &
    P=$! ;;
  strace) strace -c -f -p "$GW" -o "$W/strace.txt" & P=$! ;;
  *) echo "MODE is perf or strace" >&2; exit 2 ;;
esac
sleep 0.3
run --secs "$SECS" --label sealgate | tee "$W/load.json"
if [ "${MODE:-perf}" = strace ]; then kill -INT "$P"; fi
wait "$P" || true
echo "$W"
