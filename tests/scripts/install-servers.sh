#!/usr/bin/env bash
# Installs the real third-party servers the tests use, in sequence, then prints
# a summary (binary path under $DRUID_BIN and version).
#
# Usage: install-servers.sh [NAME...]
#   NAME: etcd etcd-versions kube minio fake-gcs azurite swift oss-gateway node (default: all of them, in that order;
#   etcd-versions: etcd 3.5-3.7 built from Go modules, see install-etcd-versions.sh;
#   swift: OpenStack Swift and Keystone from Debian's packages, see install-swift.sh;
#   oss-gateway: the OSS plugin's test gateway on Alibaba's Go SDK, see install-oss-gateway.sh;
#   node: what the real single-node Kubernetes needs, see install-node.sh)
#   kube builds $KUBE_COMPONENTS (default "kube-apiserver kubectl"; add
#   kube-controller-manager kube-scheduler kwok as needed).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
SCRIPTS="$REPO_ROOT/tests/scripts"

ALL=(etcd etcd-versions kube minio fake-gcs azurite swift oss-gateway node)
names=("$@")
[ ${#names[@]} -gt 0 ] || names=("${ALL[@]}")
for n in "${names[@]}"; do
  case " ${ALL[*]} " in *" $n "*) ;; *) die "unknown server '$n' (known: ${ALL[*]})" ;; esac
done

declare -A took
for n in "${names[@]}"; do
  start=$SECONDS
  log "=== install $n"
  bash "$SCRIPTS/install-$n.sh" || die "install-$n.sh failed"
  took[$n]=$((SECONDS - start))
done

# Go's build cache only speeds up building another version of a server (the
# built binaries are cached by version above); it grows to several GiB, so
# it does not outlive the builds.
if [ -d "$GOCACHE" ]; then
  log "removing Go's build cache $GOCACHE ($(du -sh "$GOCACHE" | cut -f1))"
  rm -rf "$GOCACHE"
fi

# row NAME VERSION-COMMAND...: one summary line for $DRUID_BIN/NAME.
row() {
  local name="$1"; shift
  local path="$DRUID_BIN/$name" version
  if [ -x "$path" ]; then
    version="$("$@" 2>&1 | grep -v '^[[:space:]]*$' | head -n1)" || true
    printf '  %-24s %-70s %s\n' "$name" "$(readlink -f "$path")" "$version"
  else
    printf '  %-24s %s\n' "$name" "(not installed)"
  fi
}

echo
echo "Servers in $DRUID_BIN:"
for n in "${names[@]}"; do
  case "$n" in
    etcd)
      row etcd "$DRUID_BIN/etcd" --version
      row etcdctl "$DRUID_BIN/etcdctl" version ;;
    etcd-versions)
      for v in $ETCD_VERSIONS; do
        printf '  %-24s %-70s %s\n' "etcd $v" "$DRUID_CACHE/etcd/$v/" \
          "$("$DRUID_CACHE/etcd/$v/etcd" --version 2>&1 | head -n1 || echo '(not installed)')"
      done ;;
    kube)
      for c in kube-apiserver kube-controller-manager kube-scheduler; do
        if [ -e "$DRUID_BIN/$c" ]; then row "$c" "$DRUID_BIN/$c" --version; fi
      done
      row kubectl "$DRUID_BIN/kubectl" version --client
      if [ -e "$DRUID_BIN/kwok" ]; then row kwok "$DRUID_BIN/kwok" --version; fi ;;
    minio)
      row minio "$DRUID_BIN/minio" --version
      row mc "$DRUID_BIN/mc" --version ;;
    fake-gcs)
      row fake-gcs-server echo "$FAKE_GCS_VERSION" ;;
    azurite)
      row azurite-blob "$DRUID_BIN/azurite-blob" --version ;;
    swift)
      # Debian's packages, run from /usr/bin (nothing linked into $DRUID_BIN).
      printf '  %-24s %-70s %s\n' swift-proxy-server /usr/bin/swift-proxy-server \
        "swift $(dpkg-query -W -f='${Version}' swift-proxy 2>/dev/null || echo '(not installed)')"
      printf '  %-24s %-70s %s\n' keystone /usr/lib/python3/dist-packages/keystone \
        "keystone $(dpkg-query -W -f='${Version}' python3-keystone 2>/dev/null || echo '(not installed)')" ;;
    oss-gateway)
      row oss-peer echo "alibabacloud-oss-go-sdk-v2 $(grep -o 'alibabacloud-oss-go-sdk-v2 v[0-9.]*' "$REPO_ROOT/tests/peers/oss/go.mod" | cut -d' ' -f2)" ;;
    node)
      for c in kubelet kube-proxy; do row "$c" "$DRUID_BIN/$c" --version; done
      row coredns "$DRUID_BIN/coredns" -version
      row containerd containerd --version ;;
  esac
done
echo "Install times (s):$(for n in "${names[@]}"; do printf ' %s=%s' "$n" "${took[$n]}"; done)"
