#!/usr/bin/env bash
# Flake hunt: runs a chosen set of tests N times in a row and prints a table
# of passes and failures per test, so a test that fails only sometimes shows
# up before it blocks a submission.
#
# Usage: scripts/flake-hunt.sh [-n RUNS] [--contend] [-- CARGO TEST ARGS...]
#   -n RUNS      how many runs (default 3)
#   --contend    run a busy loop on every core during the runs (CPU
#                contention makes timing races show)
#   CARGO TEST ARGS  what to run, as for `cargo test` (default: --workspace);
#                e.g. `-- -p druid-operator --test compaction`
#
# Needs what `make test` installs (servers, plugin components). Each run's
# full output is kept in target/flake-hunt/run-<i>.log; the table is printed
# at the end and written to target/flake-hunt/table.txt. Exits non-zero when
# any test failed in any run.
source "$(dirname "${BASH_SOURCE[0]}")/../tests/scripts/lib.sh"
cd "$REPO_ROOT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$DRUID_CACHE/cargo-target}"
export CARGO_TERM_COLOR=never

runs=3
contend=false
while [ $# -gt 0 ]; do
  case "$1" in
    -n) runs="$2"; shift 2 ;;
    --contend) contend=true; shift ;;
    --) shift; break ;;
    -h | --help) sed -n '2,17p' "$0"; exit 0 ;;
    *) die "unknown option '$1' (see --help)" ;;
  esac
done
case "$runs" in '' | *[!0-9]*) die "-n takes a number, got '$runs'" ;; esac
args=("$@")
[ ${#args[@]} -gt 0 ] || args=(--workspace)

out_dir="$REPO_ROOT/target/flake-hunt"
mkdir -p "$out_dir"
rm -f "$out_dir"/run-*.log

busy=()
stop_busy() {
  local p
  for p in "${busy[@]}"; do kill "$p" 2>/dev/null || true; done
  busy=()
}
trap stop_busy EXIT INT TERM

log "building the tests once (not counted)"
cargo test --locked --no-run "${args[@]}" >"$out_dir/build.log" 2>&1 \
  || { tail -n 40 "$out_dir/build.log" >&2; die "the tests do not build (log: $out_dir/build.log)"; }

if $contend; then
  for _ in $(seq "$(nproc)"); do
    (while :; do :; done) &
    busy+=($!)
  done
  log "contention: ${#busy[@]} busy loops"
fi

for i in $(seq "$runs"); do
  t0=$SECONDS
  log "run $i/$runs: cargo test ${args[*]}"
  cargo test --locked --no-fail-fast "${args[@]}" >"$out_dir/run-$i.log" 2>&1 || true
  log "run $i took $((SECONDS - t0))s"
done
stop_busy

# Per test (test binary + name): passes and failures over the runs. A test
# binary that ended without its "test result:" line (a crash, a timeout)
# counts as a failure of a row of its own. The whole table goes to
# table.txt; the terminal gets the rows that failed at least once.
awk -v runs="$runs" '
  function close_bin() {
    if (bin != "" && !done) { k = bin " (binary ended without a result)"; keys[k] = 1; fail[k]++ }
    bin = ""; done = 0
  }
  FNR == 1 { close_bin() }
  /^ *Running / { close_bin(); bin = $2; next }
  /^ *Doc-tests / { close_bin(); bin = "doc:" $2; next }
  /^test result: / { done = 1; next }
  /^test .* \.\.\. (ok|FAILED)$/ {
    name = $2; for (i = 3; $i != "..."; i++) name = name " " $i
    key = bin " " name; keys[key] = 1
    if ($NF == "ok") pass[key]++; else fail[key]++
    next
  }
  END {
    close_bin()
    printf "%-5s %-5s %s\n", "pass", "fail", "test"
    n = 0; bad = 0
    for (k in keys) { n++; if (fail[k] > 0) bad++; printf "%-5d %-5d %s\n", pass[k], fail[k], k | "sort -k3" }
    close("sort -k3")
    printf "%d tests over %d runs; %d failed at least once\n", n, runs, bad
    printf "%d passed, %d failed\n", n - bad, bad
  }
' "$out_dir"/run-*.log >"$out_dir/table.txt"

head -n 1 "$out_dir/table.txt"
awk 'NR > 1 && $2 ~ /^[0-9]+$/ && $2 > 0' "$out_dir/table.txt"
tail -n 2 "$out_dir/table.txt"
log "whole table: $out_dir/table.txt; each run's output: $out_dir/run-<i>.log"
! awk 'NR > 1 && $2 ~ /^[0-9]+$/ && $2 > 0 { found = 1 } END { exit !found }' "$out_dir/table.txt"
