#!/usr/bin/env bash
# A real single-node Kubernetes on this machine, in a network namespace of
# its own: etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
# containerd + runc, CNI (bridge, host-local, portmap, loopback), kubelet,
# kube-proxy and CoreDNS. Everything is installed by install-node.sh.
#
# Usage (as root):
#   node.sh up [IMAGE_TAR...]   tear down any earlier node, start one, import
#                               the OCI image archives (plus the pause image
#                               it builds), wait until the node is Ready and
#                               cluster DNS answers; prints the env file
#   node.sh down                stop everything, unmount, delete the network
#                               namespace and cgroups (idempotent; safe after
#                               a failed or interrupted run)
#   node.sh import IMAGE_TAR... import more OCI archives into the running node
#   node.sh tag REF ALIAS       tag an image of the node as ALIAS too (for
#                               manifests that pin other names: no registry
#                               serves them here)
#
# Networking. The node lives in network namespace $NODE_NETNS, joined to the
# host by one veth pair: host $NODE_HOST_IP, node $NODE_IP (a /30). Pods get
# addresses from $NODE_POD_CIDR on bridge druid0 inside the namespace;
# Services from $NODE_SERVICE_CIDR (kube-proxy, iptables mode, inside the
# namespace). The host routes only those two ranges into the namespace, and
# the namespace has no default route: pod and service traffic cannot leave
# the machine. CoreDNS answers cluster.local names on $NODE_IP:53 and
# forwards nothing.
#
# State: $NODE_DIR (default target/node of this clone; logs in logs/, kept
# after `down`), runtime sockets and mounts under $NODE_RUN. One node per
# machine at a time. The env file ($NODE_DIR/env) holds KUBECONFIG and the
# addresses for tests.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

NODE_DIR="${NODE_DIR:-$REPO_ROOT/target/node}"
NODE_RUN="${NODE_RUN:-/run/druid-node}"
NODE_NETNS="${NODE_NETNS:-druid-node}"
NODE_NAME="${NODE_NAME:-druid-node}"
NODE_HOST_IP="${NODE_HOST_IP:-10.250.0.1}"
NODE_IP="${NODE_IP:-10.250.0.2}"
NODE_POD_CIDR="${NODE_POD_CIDR:-10.244.0.0/24}"
NODE_POD_GATEWAY="${NODE_POD_GATEWAY:-10.244.0.1}"
NODE_SERVICE_CIDR="${NODE_SERVICE_CIDR:-10.96.0.0/16}"
NODE_APISERVER_PORT="${NODE_APISERVER_PORT:-6443}"
PAUSE_IMAGE="${PAUSE_IMAGE:-registry.k8s.io/pause:3.10}"
# The user kube-controller-manager runs as: the volumes its host-path
# provisioner creates belong to it, so non-root pods (65532, as the
# operator's StatefulSets run) can write to them.
VOLUME_UID=65532
HOSTPATH_PV=/tmp/hostpath_pv

LOGS="$NODE_DIR/logs"
PIDS="$NODE_DIR/pids"
SOCK="$NODE_RUN/containerd.sock"
KUBE_BIN="$DRUID_CACHE/kube/$KUBE_VERSION/bin"

# Only the network namespace: `ip netns exec` would also mount a new /sys,
# hiding the cgroup file systems the kubelet needs.
in_ns() { nsenter --net="/run/netns/$NODE_NETNS" -- "$@"; }
ctr_() { ctr --address "$SOCK" --namespace k8s.io "$@"; }

need() {
  local b
  for b in "$@"; do
    [ -x "$b" ] || command -v "$b" >/dev/null 2>&1 ||
      die "$b is missing: run tests/scripts/install-node.sh (or make test, which installs it)"
  done
}

# start NAME CMD...: starts CMD in the node's network namespace, in the
# background and in its own session, logging to logs/NAME.log, and records
# its pid.
start() {
  local name="$1"; shift
  setsid nsenter --net="/run/netns/$NODE_NETNS" -- "$@" >"$LOGS/$name.log" 2>&1 </dev/null &
  echo $! >"$PIDS/$name"
}

# wait_until WHAT SECONDS NAME CMD...: polls CMD until it succeeds; fails with
# the end of NAME's log when NAME's process exits or time runs out.
wait_until() {
  local what="$1" secs="$2" name="$3"; shift 3
  local deadline=$((SECONDS + secs)) pid
  pid="$(cat "$PIDS/$name" 2>/dev/null || true)"
  until "$@" >/dev/null 2>&1; do
    if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
      tail -n 40 "$LOGS/$name.log" >&2
      die "$name exited before $what (log: $LOGS/$name.log)"
    fi
    if [ $SECONDS -ge $deadline ]; then
      tail -n 40 "$LOGS/$name.log" >&2
      die "$what: not after ${secs}s (log: $LOGS/$name.log)"
    fi
    sleep 0.5
  done
}

kubectl_() { "$DRUID_BIN/kubectl" --kubeconfig "$NODE_DIR/apiserver/kubeconfig" "$@"; }

# ---------------------------------------------------------------- teardown

# stop_pid NAME: SIGTERM, then SIGKILL after 10 s, for a recorded process
# and its session.
stop_pid() {
  local f="$PIDS/$1" pid i
  [ -f "$f" ] || return 0
  pid="$(cat "$f")"
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$f"
}

# kill_pods: kills every process in the pods' cgroups (containers outlive
# their shims otherwise), then the shims of this node's containerd.
kill_pods() {
  local procs pid round
  for round in 1 2 3; do
    procs="$(find /sys/fs/cgroup -path '*kubepods*' -name cgroup.procs 2>/dev/null | xargs -r cat 2>/dev/null | sort -u)"
    [ -n "$procs" ] || break
    for pid in $procs; do kill -KILL "$pid" 2>/dev/null || true; done
    sleep 0.5
  done
  pkill -KILL -f "containerd-shim.*-address $SOCK" 2>/dev/null || true
}

remove_cgroups() {
  local d
  for d in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/*/kubepods.slice /sys/fs/cgroup/unified/kubepods; do
    [ -d "$d" ] || continue
    find "$d" -depth -type d -exec rmdir {} + 2>/dev/null || true
  done
}

unmount_under() {
  local dir m
  for dir in "$@"; do
    [ -n "$dir" ] || continue
    # Deepest first.
    while read -r m; do
      [ -n "$m" ] && umount -l "$m" 2>/dev/null || true
    done < <(awk -v d="$dir" '$5 == d || index($5, d "/") == 1 { print $5 }' /proc/self/mountinfo | sort -r)
  done
}

down() {
  mkdir -p "$PIDS" "$LOGS"
  local n
  # The kubelet first, so it restarts nothing; the API server and its etcd last.
  for n in kubelet kube-proxy coredns kube-scheduler kube-controller-manager; do stop_pid "$n"; done
  kill_pods
  stop_pid containerd
  for n in kube-apiserver etcd; do stop_pid "$n"; done
  # Whatever else still runs in the node's namespace (a node another
  # checkout started, whose pid files are not ours).
  if [ -e "/run/netns/$NODE_NETNS" ]; then
    ip netns pids "$NODE_NETNS" 2>/dev/null | xargs -r kill -KILL 2>/dev/null || true
    kill_pods
  fi
  unmount_under "$NODE_DIR/kubelet" "$NODE_DIR/containerd" "$NODE_RUN" "$HOSTPATH_PV"
  # grep without -q reads all its input: no SIGPIPE for the writer under pipefail.
  if ip netns list 2>/dev/null | grep -w "$NODE_NETNS" >/dev/null; then
    ip netns del "$NODE_NETNS" 2>/dev/null || true
  fi
  ip link del druid-h 2>/dev/null || true
  remove_cgroups
  rm -rf "$NODE_RUN" "$NODE_DIR/kubelet" "$NODE_DIR/containerd" "$NODE_DIR/etcd" "$NODE_DIR/cni" "$HOSTPATH_PV"
  rm -f "$NODE_DIR/env"
}

# ---------------------------------------------------------------- start-up

network() {
  ip netns add "$NODE_NETNS"
  ip link add druid-h type veth peer name druid-n
  ip link set druid-n netns "$NODE_NETNS"
  ip addr add "$NODE_HOST_IP/30" dev druid-h
  ip link set druid-h up
  in_ns ip link set lo up
  in_ns ip addr add "$NODE_IP/30" dev druid-n
  in_ns ip link set druid-n up
  # The pods' bridge, up before the first pod so the API server and CoreDNS
  # can bind the node's addresses at once.
  in_ns ip link add druid0 type bridge
  in_ns ip addr add "$NODE_POD_GATEWAY/${NODE_POD_CIDR#*/}" dev druid0
  in_ns ip link set druid0 up
  in_ns sysctl -qw net.ipv4.ip_forward=1
  # Service traffic between pods on one bridge must pass iptables.
  if [ -e /proc/sys/net/bridge/bridge-nf-call-iptables ]; then
    in_ns sysctl -qw net.bridge.bridge-nf-call-iptables=1 2>/dev/null ||
      sysctl -qw net.bridge.bridge-nf-call-iptables=1
  else
    modprobe br_netfilter 2>/dev/null || die "br_netfilter is missing: Services between pods would not work"
  fi
  # The host reaches pods and Services through the namespace; nothing else.
  ip route add "$NODE_POD_CIDR" via "$NODE_IP" dev druid-h
  ip route add "$NODE_SERVICE_CIDR" via "$NODE_IP" dev druid-h
}

control_plane() {
  log "node: etcd and kube-apiserver on https://$NODE_IP:$NODE_APISERVER_PORT"
  start etcd "$DRUID_BIN/etcd" --name node --data-dir "$NODE_DIR/etcd" \
    --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
    --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
    --initial-cluster node=http://127.0.0.1:2380 --listen-metrics-urls ''
  wait_until "etcd answers" 60 etcd in_ns "$DRUID_BIN/etcdctl" --endpoints http://127.0.0.1:2379 endpoint health
  start kube-apiserver env KUBE_APISERVER_ADDRESS="$NODE_IP" KUBE_SERVICE_CIDR="$NODE_SERVICE_CIDR" \
    KUBE_DISABLE_ADMISSION="" bash "$REPO_ROOT/tests/scripts/kube-apiserver.sh" "$NODE_DIR/apiserver" \
    "$NODE_APISERVER_PORT" http://127.0.0.1:2379 --kubelet-preferred-address-types=InternalIP
  wait_until "kube-apiserver is ready" 120 kube-apiserver kubectl_ get --raw /readyz

  local pki="$NODE_DIR/apiserver/pki" cm="$NODE_DIR/controller-manager"
  # kube-controller-manager runs as $VOLUME_UID (see above) with copies of
  # what it reads.
  mkdir -p "$cm" "$HOSTPATH_PV"
  cp "$pki/ca.crt" "$pki/sa.key" "$NODE_DIR/apiserver/kubeconfig" "$cm/"
  chown -R "$VOLUME_UID:$VOLUME_UID" "$cm" "$HOSTPATH_PV"
  chmod 700 "$cm"
  start kube-controller-manager setpriv --reuid="$VOLUME_UID" --regid="$VOLUME_UID" --clear-groups \
    "$KUBE_BIN/kube-controller-manager" --kubeconfig "$cm/kubeconfig" \
    --bind-address=127.0.0.1 --secure-port=10257 --leader-elect=false \
    --service-account-private-key-file "$cm/sa.key" --root-ca-file "$cm/ca.crt" \
    --use-service-account-credentials=false --enable-hostpath-provisioner=true \
    --controllers='*,-nodeipam,-cloud-node-lifecycle,-service-lb-controller' \
    --cert-dir "$cm/pki"
  start kube-scheduler "$KUBE_BIN/kube-scheduler" --kubeconfig "$NODE_DIR/apiserver/kubeconfig" \
    --bind-address=127.0.0.1 --secure-port=10259 --leader-elect=false
}

containerd_() {
  local c="$NODE_DIR/containerd"
  mkdir -p "$c/root" "$NODE_RUN/state" "$NODE_RUN/netns" "$NODE_DIR/cni/net.d" "$NODE_DIR/cni/ipam"
  cat >"$c/config.toml" <<EOF
version = 2
root = "$c/root"
state = "$NODE_RUN/state"
[grpc]
  address = "$SOCK"
[ttrpc]
  address = "$SOCK.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "$c/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  # Pod network namespaces under the state directory (torn down with it).
  netns_mounts_under_state_dir = true
  enable_unprivileged_ports = true
  # This machine does not let even root lower a process's oom_score_adj:
  # keep containers at or above containerd's own.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$NODE_DIR/cni/net.d"
EOF
  # No masquerading and no default route out of the namespace: pods reach
  # only the node, each other and the host's end of the veth.
  cat >"$NODE_DIR/cni/net.d/10-druid.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "druid",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "druid0",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$NODE_DIR/cni/ipam",
        "ranges": [[{"subnet": "$NODE_POD_CIDR", "gateway": "$NODE_POD_GATEWAY"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
  start containerd containerd --config "$c/config.toml"
  wait_until "containerd answers" 60 containerd ctr_ version
}

# The pause image: catatonit in pause mode (reaps zombies, waits forever),
# statically linked.
pause_image() {
  local out="$NODE_DIR/images/pause.tar"
  [ -s "$out" ] && return 0
  mkdir -p "$NODE_DIR/images"
  bash "$REPO_ROOT/scripts/build-images.sh" --one "$PAUSE_IMAGE" "$out" \
    /usr/bin/catatonit:/pause -- /pause -P
}

# import_images TAR...: imports OCI archives made by build-images.sh, each
# under the reference in TAR's .ref file.
import_images() {
  local tar ref
  for tar in "$@"; do
    [ -s "$tar" ] && [ -s "${tar%.tar}.ref" ] || die "image archive $tar or its .ref file is missing (scripts/build-images.sh makes them)"
    ref="$(cat "${tar%.tar}.ref")"
    # The archive names its image by tag (umoci): base name + tag = ref.
    ctr_ images import --base-name "${ref%:*}" "$tar" >>"$LOGS/images.log" 2>&1 ||
      { tail -n 20 "$LOGS/images.log" >&2; die "importing $tar into containerd failed"; }
    local have
    have="$(ctr_ images ls -q 2>&1)" || die "listing the node's images failed: $have"
    grep -xF "$ref" >/dev/null <<<"$have" ||
      die "$tar was imported but the node has no image $ref (it has: $(tr '\n' ' ' <<<"$have"))"
  done
  log "node: images: $(ctr_ images ls -q | grep -v '^sha256:' | tr '\n' ' ')"
}

node_agents() {
  local k="$NODE_DIR/kubelet"
  mkdir -p "$k"
  cat >"$NODE_DIR/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $NODE_DIR/apiserver/pki/ca.crt}
authorization:
  mode: Webhook
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
clusterDNS: [$NODE_IP]
clusterDomain: cluster.local
resolvConf: ""
evictionHard: {memory.available: 100Mi, nodefs.available: 1%, imagefs.available: 1%, nodefs.inodesFree: 1%}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
maxPods: 50
containerLogMaxSize: 10Mi
EOF
  start kubelet "$KUBE_BIN/kubelet" --config "$NODE_DIR/kubelet.yaml" \
    --kubeconfig "$NODE_DIR/apiserver/kubeconfig" --container-runtime-endpoint "unix://$SOCK" \
    --node-ip "$NODE_IP" --hostname-override "$NODE_NAME" --root-dir "$k" --cert-dir "$k/pki"
  cat >"$NODE_DIR/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $NODE_DIR/apiserver/kubeconfig}
mode: iptables
clusterCIDR: $NODE_POD_CIDR
hostnameOverride: $NODE_NAME
bindAddress: $NODE_IP
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
EOF
  start kube-proxy "$KUBE_BIN/kube-proxy" --config "$NODE_DIR/kube-proxy.yaml"
  cat >"$NODE_DIR/Corefile" <<EOF
.:53 {
    bind $NODE_IP
    errors
    ready 127.0.0.1:8181
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig $NODE_DIR/apiserver/kubeconfig
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }
    cache 5
}
EOF
  start coredns "$DRUID_BIN/coredns" -conf "$NODE_DIR/Corefile"
}

wait_node() {
  wait_until "node $NODE_NAME is Ready" 180 kubelet bash -c \
    "[ \"\$('$DRUID_BIN/kubectl' --kubeconfig '$NODE_DIR/apiserver/kubeconfig' get node '$NODE_NAME' \
      -o jsonpath='{.status.conditions[?(@.type==\"Ready\")].status}')\" = True ]"
  wait_until "CoreDNS is ready" 60 coredns in_ns curl -sf http://127.0.0.1:8181/ready
  wait_until "the default service account exists" 60 kube-controller-manager \
    kubectl_ -n default get serviceaccount default
  # Volumes: the host-path provisioner of kube-controller-manager, as the
  # default StorageClass.
  kubectl_ apply -f - >/dev/null <<EOF
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: standard
  annotations: {storageclass.kubernetes.io/is-default-class: "true"}
provisioner: kubernetes.io/host-path
reclaimPolicy: Delete
volumeBindingMode: Immediate
EOF
}

write_env() {
  cat >"$NODE_DIR/env.tmp" <<EOF
KUBECONFIG=$NODE_DIR/apiserver/kubeconfig
NODE_NAME=$NODE_NAME
NODE_IP=$NODE_IP
NODE_HOST_IP=$NODE_HOST_IP
NODE_NETNS=$NODE_NETNS
NODE_POD_CIDR=$NODE_POD_CIDR
NODE_SERVICE_CIDR=$NODE_SERVICE_CIDR
NODE_CONTAINERD_SOCK=$SOCK
NODE_LOGS=$LOGS
EOF
  mv -f "$NODE_DIR/env.tmp" "$NODE_DIR/env"
}

up() {
  [ "$(id -u)" -eq 0 ] || die "the node needs root (containerd, kubelet, network namespaces)"
  need ip iptables setpriv containerd runc ctr umoci catatonit curl /usr/lib/cni/bridge \
    "$DRUID_BIN/etcd" "$DRUID_BIN/etcdctl" "$DRUID_BIN/kubectl" "$DRUID_BIN/coredns" \
    "$KUBE_BIN/kube-apiserver" "$KUBE_BIN/kube-controller-manager" "$KUBE_BIN/kube-scheduler" \
    "$KUBE_BIN/kubelet" "$KUBE_BIN/kube-proxy"
  local t0=$SECONDS
  down
  rm -rf "$LOGS"
  mkdir -p "$LOGS" "$PIDS" "$NODE_RUN"
  trap 'rc=$?; if [ $rc -ne 0 ]; then log "node: start-up failed, tearing down (logs kept in $LOGS)"; down; fi' EXIT
  network
  control_plane
  containerd_
  pause_image
  import_images "$NODE_DIR/images/pause.tar" "$@"
  node_agents
  wait_node
  write_env
  trap - EXIT
  log "node: $NODE_NAME is Ready in $((SECONDS - t0))s; env: $NODE_DIR/env"
  cat "$NODE_DIR/env"
}

cmd="${1:-}"
[ $# -gt 0 ] && shift
case "$cmd" in
  up) up "$@" ;;
  down) [ "$(id -u)" -eq 0 ] || die "the node needs root"; down; log "node: down" ;;
  import) import_images "$@" ;;
  tag)
    [ $# -eq 2 ] || die "usage: $0 tag REFERENCE ALIAS"
    ctr_ images rm "$2" >/dev/null 2>&1 || true
    ctr_ images tag "$1" "$2" >/dev/null ;;
  *) die "usage: $0 up [IMAGE_TAR...] | down | import IMAGE_TAR... | tag REFERENCE ALIAS" ;;
esac
