#!/usr/bin/env bash
# The local demo (`make demo`). On a machine that can run the real node
# (root, see tests/scripts/node.sh) it runs scripts/demo-node.sh: the
# operator in the cluster and the founding manifest's etcd as a real pod,
# backed up into MinIO. Otherwise (or with DRUID_DEMO_MODE=processes): installs
# and starts a real Kubernetes control plane (etcd + kube-apiserver, built
# from source once and cached), installs the druid CRDs, starts the druid
# operator against it, applies the founding manifest
# (deploy/samples/seed-etcd.yaml) and runs member test-0 as processes. Runs
# in the foreground until Ctrl-C, then stops everything it started.
#
#   scripts/demo.sh           bring it up and keep it running
#   scripts/demo.sh --check   bring it up, check every part answers, tear down
#
# Ports (loopback only) can be moved with DEMO_ETCD_PORT, DEMO_ETCD_PEER_PORT
# DEMO_APISERVER_PORT and DEMO_METRICS_PORT (druid's /metrics, /healthz). State and logs are in target/demo/ of this clone.
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

# On a real node when this machine can run one (DRUID_DEMO_MODE=processes
# skips it); otherwise the processes below.
if [ "${DRUID_DEMO_MODE:-node}" = node ]; then
  rc=0
  bash scripts/demo-node.sh "$@" || rc=$?
  [ $rc -eq 3 ] || exit $rc
  log "the real node is not available here (see above): falling back to the demo without a kubelet"
fi

ETCD_PORT="${DEMO_ETCD_PORT:-23790}"
ETCD_PEER_PORT="${DEMO_ETCD_PEER_PORT:-23800}"
APISERVER_PORT="${DEMO_APISERVER_PORT:-26443}"
DEMO_DIR="$REPO_ROOT/target/demo"
LOGS="$DEMO_DIR/logs"

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
METRICS_PORT="${DEMO_METRICS_PORT:-28080}"
MEMBER_PORT="${DEMO_MEMBER_PORT:-23791}"
MEMBER_PEER_PORT="${DEMO_MEMBER_PEER_PORT:-23801}"
SIDECAR_PORT="${DEMO_SIDECAR_PORT:-28081}"
for p in "$ETCD_PORT" "$ETCD_PEER_PORT" "$APISERVER_PORT" "$METRICS_PORT" "$MEMBER_PORT" "$MEMBER_PEER_PORT" "$SIDECAR_PORT"; do
  port_busy "$p" && die "port $p on 127.0.0.1 is in use (another demo running?); stop it or set DEMO_ETCD_PORT / DEMO_ETCD_PEER_PORT / DEMO_APISERVER_PORT"
done

log "installing what the demo needs (cached after the first run)"
bash scripts/install-build-deps.sh
bash tests/scripts/install-servers.sh etcd kube
log "building the provider plugins (built into the operator) and the druid operator"
bash scripts/build-plugins.sh >/dev/null
nice cargo build --quiet --locked --bin druid --bin etcdbr
DRUID="$CARGO_TARGET_DIR/debug/druid"
ETCDBR="$CARGO_TARGET_DIR/debug/etcdbr"

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

log "installing the CRDs"
install_crds "$KUBECTL" deploy/crds

log "starting the druid operator"
"$DRUID" --metrics-addr "127.0.0.1:$METRICS_PORT" --leader-election-namespace kube-system \
  >"$LOGS/druid.log" 2>&1 &
pids+=($!)
wait_for druid 60 "${pids[-1]}" "$LOGS/druid.log" grep -q "leading: starting the controllers" "$LOGS/druid.log"

# The founding manifest, as-is, in its namespace, with the store Secret it
# names (S3 credentials; the backup-restore issues point them at a store).
log "applying the founding manifest (deploy/samples/seed-etcd.yaml)"
"$KUBECTL" create namespace demo >/dev/null
"$KUBECTL" -n demo create secret generic etcd-backup \
  --from-literal=accessKeyID=demo --from-literal=secretAccessKey=demo-secret \
  --from-literal=region=eu-west-1 >/dev/null
"$KUBECTL" apply --validate=strict -f deploy/samples/seed-etcd.yaml >/dev/null
wait_for "the seed's StatefulSet" 60 "${pids[-1]}" "$LOGS/druid.log" "$KUBECTL" -n demo get statefulset test
wait_for "the seed's status" 60 "${pids[-1]}" "$LOGS/druid.log" \
  bash -c "[ \"\$('$KUBECTL' -n demo get etcd test -o jsonpath='{.status.etcd.kind}')\" = StatefulSet ]"
"$KUBECTL" -n demo get etcd,statefulset,service,configmap,lease,pdb >&2

# Without a kubelet no pod runs, so member test-0 of the seed's cluster runs
# here as the two processes its pod would hold: etcd and the etcdbr sidecar.
# The sidecar backs up into a local directory store (the seed's S3 bucket is
# not reachable from here) and renews the seed's leases, so the operator's
# status shows the member and BackupReady.
DRUID_PID=${pids[-1]}
log "starting member test-0 of the seed's cluster: etcd on 127.0.0.1:$MEMBER_PORT"
"$DRUID_BIN/etcd" --name test-0 --data-dir "$DEMO_DIR/test-0/data" \
  --listen-client-urls "http://127.0.0.1:$MEMBER_PORT" --advertise-client-urls "http://127.0.0.1:$MEMBER_PORT" \
  --listen-peer-urls "http://127.0.0.1:$MEMBER_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$MEMBER_PEER_PORT" \
  --initial-cluster "test-0=http://127.0.0.1:$MEMBER_PEER_PORT" --quota-backend-bytes 8589934592 \
  >"$LOGS/test-0-etcd.log" 2>&1 &
pids+=($!)
wait_for "etcd test-0" 60 "${pids[-1]}" "$LOGS/test-0-etcd.log" \
  bash -c "curl -sf http://127.0.0.1:$MEMBER_PORT/health | grep -q '\"health\":\"true\"'"
log "starting its backup-restore sidecar (etcdbr) on 127.0.0.1:$SIDECAR_PORT, backing up into $DEMO_DIR/store"
mkdir -p "$DEMO_DIR/store/backups"
POD_NAMESPACE=demo POD_NAME=test-0 LOCAL_STORE_ROOT="$DEMO_DIR/store" \
  "$ETCDBR" server --server-address 127.0.0.1 --server-port "$SIDECAR_PORT" \
  --endpoints "http://127.0.0.1:$MEMBER_PORT" --data-dir "$DEMO_DIR/test-0/data" --name test-0 \
  --initial-cluster "test-0=http://127.0.0.1:$MEMBER_PEER_PORT" \
  --initial-advertise-peer-urls "http://127.0.0.1:$MEMBER_PEER_PORT" \
  --storage-provider Local --store-container backups --store-prefix etcd-test \
  --snapstore-temp-directory "$DEMO_DIR/test-0/tmp" --schedule "0 */24 * * *" \
  --delta-snapshot-period 10s --garbage-collection-policy Exponential --garbage-collection-period 60s \
  --enable-snapshot-lease-renewal --full-snapshot-lease-name test-full-snap --delta-snapshot-lease-name test-delta-snap \
  --enable-member-lease-renewal --k8s-heartbeat-duration 5s \
  --etcd-binary "$DRUID_BIN/etcd" --etcdctl-binary "$DRUID_BIN/etcdctl" \
  >"$LOGS/test-0-etcdbr.log" 2>&1 &
pids+=($!)
wait_for "etcdbr test-0" 120 "${pids[-1]}" "$LOGS/test-0-etcdbr.log" \
  bash -c "curl -sf http://127.0.0.1:$SIDECAR_PORT/snapshot/latest | grep -q '\"kind\":\"Full\"'"
ETCDCTL_API=3 "$DRUID_BIN/etcdctl" --endpoints "http://127.0.0.1:$MEMBER_PORT" put /demo/hello world >/dev/null
wait_for "a delta snapshot of the demo write" 60 "${pids[-1]}" "$LOGS/test-0-etcdbr.log" \
  bash -c "curl -sf http://127.0.0.1:$SIDECAR_PORT/snapshot/latest | grep -q '\"kind\":\"Incr\"'"
wait_for "the seed's BackupReady condition" 90 "$DRUID_PID" "$LOGS/druid.log" \
  bash -c "[ \"\$('$KUBECTL' -n demo get etcd test -o jsonpath='{.status.conditions[?(@.type==\"BackupReady\")].status}')\" = True ]"
log "backups of member test-0 (store $DEMO_DIR/store/backups/etcd-test/v2):"
ls "$DEMO_DIR/store/backups/etcd-test/v2" >&2
"$KUBECTL" -n demo get lease test-0 test-full-snap test-delta-snap >&2

if $check; then
  [ "$("$KUBECTL" -n demo get etcd test -o jsonpath='{.status.conditions[?(@.type=="SpecValid")].status}')" = True ] ||
    die "the seed's SpecValid condition is not True"
  # The operator writes members[] from the member leases at its next
  # reconcile, which may come a few seconds after BackupReady.
  wait_for "the seed's status shows member test-0 as Leader" 60 "$DRUID_PID" "$LOGS/druid.log" \
    bash -c "[ \"\$('$KUBECTL' -n demo get etcd test -o jsonpath='{.status.members[0].role}')\" = Leader ]"
  kill -0 "$DRUID_PID" || die "druid exited"
  log "demo check passed: etcd, kube-apiserver and druid are up, the seed's components exist, member test-0 serves and is backed up (BackupReady)"
  exit 0
fi

cat >&2 <<EOT

The demo is running. In another shell:
  export KUBECONFIG=$KUBECONFIG
  $KUBECTL -n demo get etcd -o wide
  $KUBECTL -n demo describe etcd test
  ETCDCTL_API=3 $DRUID_BIN/etcdctl --endpoints http://127.0.0.1:$MEMBER_PORT put /demo/key value
  curl http://127.0.0.1:$SIDECAR_PORT/snapshot/latest     # the backups of member test-0
  curl http://127.0.0.1:$SIDECAR_PORT/snapshot/full       # a full snapshot now
Logs: $LOGS   Stop: Ctrl-C
EOT
wait "$DRUID_PID"
