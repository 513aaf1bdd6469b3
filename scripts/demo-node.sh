#!/usr/bin/env bash
# The demo on a real node (scripts/demo.sh runs it; exit code 3 means the
# node cannot run on this machine and demo.sh falls back to processes).
#
# Starts the real single-node Kubernetes (tests/scripts/node.sh) with the
# product's images, MinIO on the host's address of the node network as the
# demo's object store, installs the CRDs and the operator from
# deploy/operator (in the cluster, under its own ServiceAccount), and applies
# the founding manifest as-is: its etcd runs as a real pod (our etcd image
# with the wrapper, our sidecar) and backs up into MinIO.
#
#   scripts/demo-node.sh           bring it up and keep it running (Ctrl-C stops it)
#   scripts/demo-node.sh --check   bring it up, check it, tear it down
source "$(dirname "${BASH_SOURCE[0]}")/../tests/scripts/lib.sh"
cd "$REPO_ROOT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$DRUID_CACHE/cargo-target}"

check=false
[ "${1:-}" = "--check" ] && check=true
UNAVAILABLE=3

DEMO_DIR="$REPO_ROOT/target/demo"
LOGS="$DEMO_DIR/logs"
NS=demo
KUBECTL="$DRUID_BIN/kubectl"

if [ "$(id -u)" -ne 0 ]; then
  log "the real node needs root (containerd, kubelet, network namespaces)"
  exit $UNAVAILABLE
fi

log "installing what the demo needs (cached after the first run)"
bash scripts/install-build-deps.sh
bash tests/scripts/install-servers.sh etcd kube minio >/dev/null
bash tests/scripts/install-node.sh >/dev/null || { log "the node's parts could not be installed"; exit $UNAVAILABLE; }
log "building the images (plugins built in)"
bash scripts/build-images.sh --profile dev

rm -rf "$DEMO_DIR"
mkdir -p "$LOGS"
minio_pid=""
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  log "stopping the demo"
  [ -z "$minio_pid" ] || { kill "$minio_pid" 2>/dev/null || true; wait "$minio_pid" 2>/dev/null || true; }
  bash tests/scripts/node.sh down >/dev/null 2>&1 || true
  [ $rc -eq 0 ] || [ $rc -eq $UNAVAILABLE ] || log "demo failed; logs are in $LOGS and target/node/logs"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log "starting the node"
if ! bash tests/scripts/node.sh up target/images/druid.tar target/images/etcdbr.tar target/images/etcd.tar \
  >"$LOGS/node.log" 2>&1; then
  tail -n 20 "$LOGS/node.log" >&2
  log "the node did not start on this machine (log: $LOGS/node.log)"
  exit $UNAVAILABLE
fi
# shellcheck disable=SC1091
source target/node/env
export KUBECONFIG

# wait_until WHAT SECONDS CMD...: polls CMD until it succeeds.
wait_until() {
  local what="$1" secs="$2"; shift 2
  local deadline=$((SECONDS + secs)) t0=$SECONDS
  until "$@" >/dev/null 2>&1; do
    if [ $SECONDS -ge $deadline ]; then
      "$KUBECTL" get pods -A -o wide >&2 || true
      "$KUBECTL" -n "$NS" get events --sort-by=.lastTimestamp 2>/dev/null | tail -n 20 >&2 || true
      die "$what: not after ${secs}s"
    fi
    sleep 1
  done
  log "$what (${SECONDS}s total, $((SECONDS - t0))s waited)"
}
jp() { "$KUBECTL" "$@" 2>/dev/null; }

MINIO_PORT="${DEMO_MINIO_PORT:-29000}"
MINIO_USER=demo
MINIO_PASSWORD="demo-$(openssl rand -hex 8)"
log "starting MinIO on http://$NODE_HOST_IP:$MINIO_PORT (the demo's object store)"
mkdir -p "$DEMO_DIR/minio"
MINIO_ROOT_USER="$MINIO_USER" MINIO_ROOT_PASSWORD="$MINIO_PASSWORD" MINIO_BROWSER=off MINIO_UPDATE=off \
  HOME="$DEMO_DIR" "$DRUID_BIN/minio" server "$DEMO_DIR/minio" --address "$NODE_HOST_IP:$MINIO_PORT" \
  --console-address "$NODE_HOST_IP:$((MINIO_PORT + 1))" >"$LOGS/minio.log" 2>&1 &
minio_pid=$!
wait_until "MinIO is ready" 60 curl -sf "http://$NODE_HOST_IP:$MINIO_PORT/minio/health/ready"
# The credentials stay in mc's configuration (target/demo/mc, root only).
MC="'$DRUID_BIN/mc' --quiet --config-dir '$DEMO_DIR/mc'"
mc() { "$DRUID_BIN/mc" --quiet --config-dir "$DEMO_DIR/mc" "$@"; }
mc alias set demo "http://$NODE_HOST_IP:$MINIO_PORT" "$MINIO_USER" "$MINIO_PASSWORD" >/dev/null
chmod -R go-rwx "$DEMO_DIR/mc"
mc mb demo/test >/dev/null

log "installing the CRDs and the operator (deploy/operator/druid.yaml)"
install_crds "$KUBECTL" deploy/crds
"$KUBECTL" apply --validate=strict -f deploy/operator/druid.yaml >/dev/null
wait_until "the operator is available" 180 \
  bash -c "[ \"\$('$KUBECTL' -n druid-system get deployment druid -o jsonpath='{.status.availableReplicas}')\" = 2 ]"

log "applying the founding manifest (deploy/samples/seed-etcd.yaml) with its Secret and storage class"
"$KUBECTL" apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Namespace
metadata: {name: $NS}
---
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {name: gardener.cloud-fast}
provisioner: kubernetes.io/host-path
reclaimPolicy: Delete
---
apiVersion: v1
kind: Secret
metadata: {name: etcd-backup, namespace: $NS}
stringData:
  accessKeyID: "$MINIO_USER"
  secretAccessKey: "$MINIO_PASSWORD"
  region: us-east-1
  endpoint: "http://$NODE_HOST_IP:$MINIO_PORT"
  s3ForcePathStyle: "true"
EOF
# The manifest pins gardener's image names; no registry serves them here, so
# the node knows our images under those names too.
version="$(cat target/images/etcdbr.ref)"; version="${version##*:}"
bash tests/scripts/node.sh tag "ghcr.io/druid-rs/etcdbr:$version" eu.gcr.io/gardener-project/gardener/etcdbrctl:v0.25.0
bash tests/scripts/node.sh tag "ghcr.io/druid-rs/etcd:$version" eu.gcr.io/gardener-project/gardener/etcd-wrapper:v0.1.0
"$KUBECTL" apply --validate=strict -f deploy/samples/seed-etcd.yaml >/dev/null
t_apply=$SECONDS
wait_until "pod test-0 is Ready" 300 \
  bash -c "[ \"\$('$KUBECTL' -n $NS get pod test-0 -o jsonpath='{.status.conditions[?(@.type==\"Ready\")].status}')\" = True ]"
wait_until "Etcd test is Ready" 120 bash -c "[ \"\$('$KUBECTL' -n $NS get etcd test -o jsonpath='{.status.ready}')\" = true ]"
log "kubectl apply to Etcd Ready: $((SECONDS - t_apply))s"

client_ip="$(jp -n $NS get service test-client -o jsonpath='{.spec.clusterIP}')"
pod_ip="$(jp -n $NS get pod test-0 -o jsonpath='{.status.podIP}')"
ETCDCTL_API=3 "$DRUID_BIN/etcdctl" --endpoints "http://$client_ip:2379" put /demo/hello world >/dev/null
wait_until "a full snapshot in the bucket" 120 bash -c "$MC ls --recursive demo/test/etcd-test/v2/ | grep -q Full-"
curl -sf "http://$pod_ip:8080/snapshot/delta" >/dev/null || true
wait_until "a delta snapshot in the bucket" 120 bash -c "$MC ls --recursive demo/test/etcd-test/v2/ | grep -q Incr-"
wait_until "the seed's BackupReady condition" 120 \
  bash -c "[ \"\$('$KUBECTL' -n $NS get etcd test -o jsonpath='{.status.conditions[?(@.type==\"BackupReady\")].status}')\" = True ]"
"$KUBECTL" -n "$NS" get etcd,statefulset,pod,service,lease,pdb >&2
mc ls --recursive demo/test/etcd-test/v2/ >&2

if $check; then
  # The operator writes members[] from the member leases at its next
  # reconcile, which may come a few seconds after BackupReady.
  wait_until "the seed's status shows member test-0 as Leader" 60 \
    bash -c "[ \"\$('$KUBECTL' -n $NS get etcd test -o jsonpath='{.status.members[0].role}')\" = Leader ]"
  [ "$(ETCDCTL_API=3 "$DRUID_BIN/etcdctl" --endpoints "http://$client_ip:2379" get --print-value-only /demo/hello)" = world ] ||
    die "the client Service does not serve the demo's write"
  log "demo check passed: the operator runs in the cluster, the founding manifest's etcd runs as pod test-0, serves through its client Service and is backed up into MinIO (BackupReady)"
  exit 0
fi

cat >&2 <<EOT

The demo is running on a real node. In another shell:
  export KUBECONFIG=$KUBECONFIG
  $KUBECTL -n demo get etcd,pods -o wide
  $KUBECTL -n demo logs test-0 -c backup-restore
  ETCDCTL_API=3 $DRUID_BIN/etcdctl --endpoints http://$client_ip:2379 put /demo/key value
  curl http://$pod_ip:8080/snapshot/latest      # the backups of member test-0
  $DRUID_BIN/mc --config-dir $DEMO_DIR/mc ls -r demo/test   # the bucket
Logs: $LOGS and target/node/logs   Stop: Ctrl-C
EOT
while kill -0 "$minio_pid" 2>/dev/null; do sleep 5; done
