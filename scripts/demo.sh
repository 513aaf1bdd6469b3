#!/usr/bin/env bash
# The local demo (`make demo`): installs and starts a real Kubernetes control
# plane (etcd + kube-apiserver, built from source once and cached), installs
# the druid CRDs and starts the druid operator against it. Runs in the
# foreground until Ctrl-C, then stops everything it started.
#
#   scripts/demo.sh           bring it up and keep it running
#   scripts/demo.sh --check   bring it up, check every part answers, tear down
#
# Ports (loopback only) can be moved with DEMO_ETCD_PORT, DEMO_ETCD_PEER_PORT
# and DEMO_APISERVER_PORT. State and logs are in target/demo/ of this clone.
source "$(dirname "${BASH_SOURCE[0]}")/../tests/scripts/lib.sh"
cd "$REPO_ROOT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$DRUID_CACHE/cargo-target}"
claim_shared_targets

check=false
case "${1:-}" in
  --check) check=true ;;
  "") ;;
  *) die "usage: $0 [--check]" ;;
esac

ETCD_PORT="${DEMO_ETCD_PORT:-23790}"
ETCD_PEER_PORT="${DEMO_ETCD_PEER_PORT:-23800}"
APISERVER_PORT="${DEMO_APISERVER_PORT:-26443}"
DEMO_DIR="$REPO_ROOT/target/demo"
LOGS="$DEMO_DIR/logs"

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for p in "$ETCD_PORT" "$ETCD_PEER_PORT" "$APISERVER_PORT"; do
  port_busy "$p" && die "port $p on 127.0.0.1 is in use (another demo running?); stop it or set DEMO_ETCD_PORT / DEMO_ETCD_PEER_PORT / DEMO_APISERVER_PORT"
done

log "installing what the demo needs (cached after the first run)"
bash scripts/install-build-deps.sh
bash tests/scripts/install-servers.sh etcd kube
log "building the druid operator"
nice cargo build --quiet --locked --bin druid
DRUID="$CARGO_TARGET_DIR/debug/druid"

rm -rf "$DEMO_DIR"
mkdir -p "$LOGS"
pids=()
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [ ${#pids[@]} -gt 0 ]; then
    log "stopping the demo"
    # One at a time, in reverse order (operator, API server, etcd): the API
    # server shuts down quickly only while its etcd is still there.
    for ((i=${#pids[@]}-1; i>=0; i--)); do
      kill "${pids[i]}" 2>/dev/null || true
      wait "${pids[i]}" 2>/dev/null || true
    done
  fi
  [ $rc -eq 0 ] || log "demo failed; logs are in $LOGS"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# wait_for WHAT SECONDS PID CMD...: polls CMD until it succeeds, failing early
# (with the log) when the process PID has exited.
wait_for() {
  local what="$1" secs="$2" pid="$3" log_file="$4"; shift 4
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 30 "$log_file" >&2; die "$what exited during start-up (log: $log_file)"
    fi
    if [ $SECONDS -ge $deadline ]; then
      tail -n 30 "$log_file" >&2; die "$what not ready after ${secs}s (log: $log_file)"
    fi
    sleep 0.5
  done
  log "$what is ready"
}

log "starting etcd for the control plane on 127.0.0.1:$ETCD_PORT"
"$DRUID_BIN/etcd" --name demo --data-dir "$DEMO_DIR/etcd" \
  --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
  --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
  --initial-cluster "demo=http://127.0.0.1:$ETCD_PEER_PORT" >"$LOGS/etcd.log" 2>&1 &
pids+=($!)
wait_for etcd 60 "${pids[-1]}" "$LOGS/etcd.log" \
  bash -c "curl -sf http://127.0.0.1:$ETCD_PORT/health | grep -q '\"health\":\"true\"'"

log "starting kube-apiserver on https://127.0.0.1:$APISERVER_PORT"
bash tests/scripts/kube-apiserver.sh "$DEMO_DIR/apiserver" "$APISERVER_PORT" "http://127.0.0.1:$ETCD_PORT" \
  >"$LOGS/kube-apiserver.log" 2>&1 &
pids+=($!)
export KUBECONFIG="$DEMO_DIR/apiserver/kubeconfig"
KUBECTL="$DRUID_BIN/kubectl"
wait_for kube-apiserver 120 "${pids[-1]}" "$LOGS/kube-apiserver.log" "$KUBECTL" get --raw /readyz

shopt -s nullglob
crds=(deploy/crds/*.yaml)
if [ ${#crds[@]} -gt 0 ]; then
  log "installing the CRDs: ${crds[*]}"
  for f in "${crds[@]}"; do "$KUBECTL" apply --server-side -f "$f" >/dev/null; done
else
  log "no CRDs in deploy/crds yet (the operator issue adds them)"
fi

log "starting the druid operator"
"$DRUID" >"$LOGS/druid.log" 2>&1 &
pids+=($!)
wait_for druid 60 "${pids[-1]}" "$LOGS/druid.log" grep -q "druid started" "$LOGS/druid.log"

if $check; then
  "$KUBECTL" create namespace demo-check >/dev/null
  [ "$("$KUBECTL" get namespace demo-check -o jsonpath='{.status.phase}')" = Active ] ||
    die "the demo control plane did not serve a namespace back"
  kill -0 "${pids[-1]}" || die "druid exited"
  log "demo check passed: etcd, kube-apiserver and druid are up and answering"
  exit 0
fi

cat >&2 <<EOT

The demo is running. In another shell:
  export KUBECONFIG=$KUBECONFIG
  $KUBECTL get namespaces
Logs: $LOGS   Stop: Ctrl-C
EOT
wait "${pids[-1]}"
