#!/usr/bin/env bash
# The test command (`make test`, and CI's .ci/run): installs everything the
# tests need, builds the plugin components, checks formatting and lints, runs
# every test against real servers, then brings the demo up and checks it.
#
# Heavy builds are cached in $DRUID_CACHE (default ~/.cache/druid-rs), outside
# the clone, so a fresh clone's second run is fast. The cargo target directory
# defaults to $DRUID_CACHE/cargo-target for the same reason; set
# CARGO_TARGET_DIR to use another.
source "$(dirname "${BASH_SOURCE[0]}")/../tests/scripts/lib.sh"
cd "$REPO_ROOT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$DRUID_CACHE/cargo-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# Test builds are not incremental: a fresh clone rebuilds every workspace
# crate from its (touched) sources anyway, and incremental caches are most
# of what makes a shared target directory grow. See trim_cargo_target.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
trim_cargo_target "$CARGO_TARGET_DIR" "${DRUID_TARGET_BUDGET_GIB:-30}"
claim_shared_targets
# A cold run writes about 25 GiB (cargo targets, toolchains, Go-built
# servers, images, test data); the real node's kubelet evicts pods when its
# disk has less than 1% free.
free=$(free_disk_gib "$DRUID_CACHE")
log "free disk: ${free} GiB on $DRUID_CACHE, $(free_disk_gib "$REPO_ROOT") GiB on $REPO_ROOT"
[ "$free" -ge 10 ] || log "warning: less than 10 GiB free; a cold run may fill the disk (free space, or set DRUID_CACHE to a larger disk)"
# The end-to-end tests start a real node and tear it down when they exit;
# this also tears down one that a killed test left behind.
trap 'bash tests/scripts/node.sh down >/dev/null 2>&1 || true' EXIT

timings=()
step() {
  local name="$1"; shift
  local t0=$SECONDS rc=0
  log "== $name"
  # The status is returned (under `set -e` a failed step still ends the
  # run; a caller with `||` records it and goes on).
  "$@" || rc=$?
  timings+=("$(printf '%-28s %5ss' "$name" $((SECONDS - t0)))")
  return "$rc"
}

step "build dependencies" bash scripts/install-build-deps.sh
step "test servers" bash tests/scripts/install-servers.sh
step "plugin components" bash scripts/build-plugins.sh
# The product's images for the real node's end-to-end tests (dev profile:
# the same code as a release build, and the test build shares its work).
step "images" bash scripts/build-images.sh --profile dev
# The same with the next etcd minor version: the node suite upgrades a
# running cluster to it (and refuses to go back).
step "images (next etcd)" bash scripts/build-images.sh --profile dev --etcd-version "$NEXT_ETCD_VERSION" --out target/images-next
step "cargo fmt --check" cargo fmt --all -- --check
step "cargo clippy" nice cargo clippy --workspace --all-targets --locked -- -D warnings
# Every test binary is built first (one cargo, one lock on the target
# directory). The real node's suite waits on pods for most of its ~30
# minutes: it runs at normal priority (its kubelet and pods inherit it and
# keep their CPU) next to the other test binaries, which run at lower
# priority. The overload test counts retries within a time window, so it
# runs alone afterwards. Every part runs even when one fails.
step "cargo test --no-run" nice cargo test --workspace --locked --no-run
node_exe=$(cargo test --locked -p druid-e2e --test node --no-run --message-format=json 2>/dev/null |
  python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "node" and m.get("executable"):
        print(m["executable"])')
[ -x "$node_exe" ] || { log "cannot find the node test binary"; exit 1; }
node_log="$REPO_ROOT/target/node-suite.log"
mkdir -p "$REPO_ROOT/target"
node_t0=$SECONDS
log "== node e2e suite (in the background: $node_log)"
(cd tests/e2e && DRUID_REPO_ROOT="$REPO_ROOT" exec "$node_exe") > "$node_log" 2>&1 &
node_pid=$!
failed=()
step "cargo test (next to the node suite)" nice cargo test --workspace --exclude druid-e2e --locked --no-fail-fast -- --skip one_object_cannot_overload_the_operator_or_the_api_server || failed+=("workspace tests")
step "cargo test e2e (stores, servers)" nice cargo test -p druid-e2e --locked --no-fail-fast --lib --test stores --test servers || failed+=("e2e store tests")
# The tests that start etcd, again on the newest version (3.4, the oldest,
# above): every one, about 6 minutes. 3.5 runs in the node suite (the
# images' etcd) and, with 3.6, in versions.rs above.
step "etcd 3.7 (every test)" nice bash scripts/test-etcd-versions.sh 3.7 || failed+=("etcd 3.7")
log "waiting for the node suite"
node_rc=0
wait "$node_pid" || node_rc=$?
timings+=("$(printf '%-28s %5ss' "node e2e suite" $((SECONDS - node_t0)))")
cat "$node_log" >&2
[ "$node_rc" -eq 0 ] || failed+=("node e2e suite")
# `--workspace`, not `-p druid-operator`: the same package selection (so
# the same features) as the build above; `-p` rebuilt about 100 crates cold.
step "overload test" nice cargo test --workspace --locked --test overload || failed+=("overload test")
if [ "${#failed[@]}" -gt 0 ]; then
  log "failed: ${failed[*]}"
  exit 1
fi
# The tests passed: their servers' data (kept for a failure's post-mortem)
# is no longer needed.
rm -rf target/test-servers
# A plugin author's path, out of tree: the template instantiated in a
# temporary directory, built with the documented command and loaded.
step "out-of-tree plugin" bash scripts/check-new-plugin.sh
step "demo --check" bash scripts/demo.sh --check

log "== timings"
printf '  %s\n' "${timings[@]}" >&2
log "free disk at the end: $(free_disk_gib "$DRUID_CACHE") GiB; the cache holds:"
du -sh "$DRUID_CACHE"/* "$HOME/.rustup" "$HOME/.cargo" 2>/dev/null | sort -h | tail -n 8 >&2 || true
log "all checks passed in $((SECONDS / 60))m$((SECONDS % 60))s"
