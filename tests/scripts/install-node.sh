#!/usr/bin/env bash
# Installs what a real single-node Kubernetes needs (tests/scripts/node.sh
# starts it): containerd, runc, the CNI plugins, iptables and conntrack,
# umoci and skopeo (images without a daemon) and catatonit (the pause
# image's process) from Debian; kubelet, kube-proxy, kube-scheduler and
# kube-controller-manager built from k8s.io/kubernetes like kube-apiserver
# (install-kube.sh); CoreDNS built from its Go module. Cached in
# $DRUID_CACHE, keyed by version; idempotent.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

apt_install containerd runc containernetworking-plugins umoci skopeo iptables conntrack \
  catatonit ethtool socat kmod
for b in containerd runc umoci iptables catatonit; do
  command -v "$b" >/dev/null 2>&1 || die "$b is missing after the install"
done
[ -x /usr/lib/cni/bridge ] || die "the CNI plugins are missing (/usr/lib/cni/bridge)"

bash "$REPO_ROOT/tests/scripts/install-kube.sh" kube-apiserver kubectl kubelet kube-proxy \
  kube-scheduler kube-controller-manager

build_coredns() {
  local dir="$DRUID_CACHE/coredns/$COREDNS_VERSION"
  if [ -x "$dir/coredns" ]; then
    log "coredns: $COREDNS_VERSION already built"
  else
    local start=$SECONDS
    log "coredns: building $COREDNS_VERSION"
    mkdir -p "$dir"
    go_install_to "$dir" "github.com/coredns/coredns@$COREDNS_VERSION"
    log "coredns: built $dir/coredns in $((SECONDS - start))s"
  fi
  link_bin "$dir/coredns" coredns
}
with_lock "coredns-$COREDNS_VERSION" build_coredns
