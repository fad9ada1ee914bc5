#!/usr/bin/env bash
# sealgate's fuzz targets (fuzz/, cargo-fuzz and libFuzzer on the stable
# toolchain through RUSTC_BOOTSTRAP=1).
#   scripts/fuzz.sh                  lists the targets, one name a line
#   scripts/fuzz.sh TARGET SECONDS   runs one target for SECONDS
#   scripts/fuzz.sh --all SECONDS    runs every target in turn (CI's pass)
#   scripts/fuzz.sh --keep TARGET    after a long run: merges into the
#                                    committed corpus the inputs of
#                                    fuzz/work/TARGET that add coverage
#                                    (libFuzzer -merge=1), to be committed
# Each run starts from the committed corpus (fuzz/corpus/TARGET, read only)
# and keeps what it finds in fuzz/work/TARGET. Limits: 10 s per input (a
# slower one is a hang), 2048 MiB resident (more is a failure), inputs up
# to 1 MiB. A failing input is left in fuzz/artifacts/TARGET: add it to
# fuzz/regressions/TARGET with a test. Builds keep debug assertions (an
# integer overflow is a failure, as in tests). SANITIZER=address runs under
# ASan (the default, none, suits a crate without unsafe code and runs
# faster); FUZZ_BUILD=dev builds without optimisation (CI's short pass:
# quicker to build, slower to run).
# The log of each run is fuzz/logs/TARGET.log; its last line sums it up.
set -euo pipefail
cd "$(dirname "$0")/.."

targets() {
  awk '/^\[\[bin\]\]/ { bin = 1; next }
       bin && /^name *=/ { gsub(/^name *= *"|"$/, ""); print; bin = 0 }' fuzz/Cargo.toml
}

if [ $# -eq 0 ]; then
  targets
  exit 0
fi

usage() { echo "usage: scripts/fuzz.sh [TARGET SECONDS | --all SECONDS | --keep TARGET]" >&2; exit 2; }
[ $# -eq 2 ] || usage
if [ "$1" = --keep ]; then
  targets | grep -qx -- "$2" || usage
  keep=$2
else
  keep=
  case "$2" in '' | *[!0-9]*) usage ;; esac
fi
seconds=${2}
if [ -n "$keep" ]; then
  selected=$keep
elif [ "$1" = --all ]; then
  selected=$(targets)
elif targets | grep -qx -- "$1"; then
  selected=$1
else
  echo "scripts/fuzz.sh: no target named '$1'; the targets are:" >&2
  targets >&2
  exit 2
fi

if ! command -v cargo-fuzz >/dev/null 2>&1; then
  echo "== cargo install cargo-fuzz"
  cargo install --locked cargo-fuzz --version 0.13.2
fi
export RUSTC_BOOTSTRAP=1
sanitizer=${SANITIZER:-none}
flags=(--sanitizer "$sanitizer" --debug-assertions)
case "${FUZZ_BUILD:-release}" in
  release) ;;
  dev) flags+=(--dev) ;;
  *) echo "scripts/fuzz.sh: FUZZ_BUILD is release or dev" >&2; exit 2 ;;
esac

echo "== cargo fuzz build (sanitizer: $sanitizer, ${FUZZ_BUILD:-release})"
if [ "$1" = --all ]; then
  (cd fuzz && cargo fuzz build "${flags[@]}")
else
  (cd fuzz && cargo fuzz build "${flags[@]}" "$selected")
fi

if [ -n "$keep" ]; then
  before=$(ls "fuzz/corpus/$keep" | wc -l)
  (cd fuzz && cargo fuzz run "${flags[@]}" "$keep" "corpus/$keep" "work/$keep" -- \
      -merge=1 -timeout=10 -rss_limit_mb=2048 -max_len=1048576) >"fuzz/logs/$keep.merge.log" 2>&1
  echo "kept $keep: $before -> $(ls "fuzz/corpus/$keep" | wc -l) inputs in fuzz/corpus/$keep (commit them)"
  exit 0
fi

mkdir -p fuzz/logs
failed=()
for t in $selected; do
  mkdir -p "fuzz/work/$t" "fuzz/corpus/$t"
  echo "== fuzz $t for ${seconds}s"
  log="fuzz/logs/$t.log"
  status=0
  (cd fuzz && cargo fuzz run "${flags[@]}" "$t" "work/$t" "corpus/$t" -- \
      -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=2048 \
      -max_len=1048576 -print_final_stats=1) >"$log" 2>&1 || status=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rss=$(sed -n 's/^stat::peak_rss_mb: *//p' "$log" | tail -1)
  last=$(grep -E '^#[0-9]+' "$log" | tail -1 || true)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
  corp=$(sed -n 's/.* corp: \([0-9]*\).*/\1/p' <<<"$last")
  if [ "$status" -ne 0 ]; then
    tail -40 "$log" >&2
    echo "FAIL $t: libFuzzer exited $status after ${execs:-?} inputs; the input is in fuzz/artifacts/$t (log: $log)" >&2
    failed+=("$t")
    continue
  fi
  echo "ok $t: ${seconds}s, ${execs:-?} inputs, cov ${cov:-?}, ft ${ft:-?}, corpus ${corp:-?}, peak rss ${rss:-?} MiB, 0 crashes" | tee -a "$log"
done
# Every selected target runs even after one fails, so one failure does not
# hide the verdicts of the others.
if [ ${#failed[@]} -gt 0 ]; then
  echo "FAIL: ${#failed[@]} target(s) failed: ${failed[*]}" >&2
  exit 1
fi
