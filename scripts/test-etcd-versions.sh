#!/usr/bin/env bash
# Runs the tests that start etcd on the etcd versions users run next to
# Debian's 3.4: $ETCD_VERSIONS (3.5, 3.6, 3.7), built from Go modules by
# tests/scripts/install-etcd-versions.sh. Each test binary picks its etcd,
# etcdctl and etcdutl by DRUID_ETCD_VERSION (tests/support's find_binary);
# the sidecar restores with etcdutl where it exists (3.6 removed
# `etcdctl snapshot restore`).
#
# Usage: scripts/test-etcd-versions.sh [--quick] [VERSION...]
#   --quick: the sidecar end to end (snapshots, deltas, restores, the catch-up),
#            restore by compaction (the sidecar's and the operator's), the
#            etcd-db reader on real databases and the etcd wrapper;
#            default: every test binary of the sidecar, the etcd wrapper and
#            the etcd-db reader that starts etcd (about 6 minutes; what CI
#            runs on the newest version).
#   VERSION: v3.6.17 or 3.6 (default: every one of $ETCD_VERSIONS).
source "$(dirname "${BASH_SOURCE[0]}")/../tests/scripts/lib.sh"
cd "$REPO_ROOT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$DRUID_CACHE/cargo-target}"

quick=""
if [ "${1:-}" = "--quick" ]; then quick=1; shift; fi
versions=("$@")
[ ${#versions[@]} -gt 0 ] || read -r -a versions <<<"$ETCD_VERSIONS"

# The packages as `make test` selects them (`--workspace --exclude
# druid-e2e`), so that cargo reuses its build (`-p` changes features and
# rebuilds about 100 crates). `--test compaction` also names the
# operator's compaction test, whose API server then stores in that etcd.
# `versions.rs` is not listed: it starts every version itself.
if [ -n "$quick" ]; then
  tests=(--workspace --exclude druid-e2e --test sidecar --test compaction
         --test real_etcd --test wrapper)
else
  tests=(--workspace --exclude druid-e2e --test sidecar --test compaction
         --test cluster --test cut_over --test defrag --test faults
         --test join --test no_secrets --test scale_in --test upstream_store
         --test real_etcd --test wrapper --test upstream_calls)
fi

# Built once; each version then runs the test executables themselves (in
# their package's directory, as cargo test does), so no version waits on
# cargo.
log "building the tests"
cargo test --locked "${tests[@]}" --no-run
mapfile -t exes < <(cargo test --locked "${tests[@]}" --no-run --message-format=json 2>/dev/null |
  python3 -c 'import json,os,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["profile"]["test"]:
        print(os.path.dirname(m["manifest_path"]) + "\t" + m["executable"])')
[ ${#exes[@]} -gt 0 ] || die "cargo test --no-run listed no test executable"

failed=()
for v in "${versions[@]}"; do
  v="v${v#v}"
  # A bare minor (3.6) takes the pinned patch of $ETCD_VERSIONS.
  if [[ "$v" =~ ^v[0-9]+\.[0-9]+$ ]]; then
    for pinned in $ETCD_VERSIONS; do
      case "$pinned" in "$v".*) v="$pinned" ;; esac
    done
  fi
  bash tests/scripts/install-etcd-versions.sh "$v"
  t0=$SECONDS
  log "== tests on etcd $v"
  ok=1
  for e in "${exes[@]}"; do
    log "etcd $v: ${e#*$'\t'}"
    (cd "${e%%$'\t'*}" && DRUID_ETCD_VERSION="$v" "${e#*$'\t'}") || ok=""
  done
  if [ -n "$ok" ]; then
    log "etcd $v: passed in $((SECONDS - t0))s"
  else
    log "etcd $v: FAILED (after $((SECONDS - t0))s)"
    failed+=("$v")
  fi
done
[ ${#failed[@]} -eq 0 ] || die "tests failed on etcd ${failed[*]}"
log "every test passed on etcd ${versions[*]}"
