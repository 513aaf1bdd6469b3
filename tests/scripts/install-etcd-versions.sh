#!/usr/bin/env bash
# Builds etcd, etcdctl and etcdutl of the etcd versions users run next to
# Debian's 3.4 (install-etcd.sh), from the Go modules
# go.etcd.io/etcd/{server,etcdctl,etcdutl}/v3, into
# $DRUID_CACHE/etcd/<version>/{etcd,etcdctl,etcdutl}, once per version.
#
# Usage: install-etcd-versions.sh [VERSION...]   (default: $ETCD_VERSIONS)
#
# The modules' go.mod files carry replace directives (their repository's
# layout), so `go install module@version` refuses them; they are built from
# a throwaway main module that requires the three at the same version.
# Tests find the binaries by version: DRUID_ETCD_VERSION=3.6 picks the
# newest built 3.6.x (tests/support).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# build_etcd_version VERSION (under the lock).
build_etcd_version() {
  local version="$1" dir="$DRUID_CACHE/etcd/$1"
  if [ -x "$dir/etcd" ] && [ -x "$dir/etcdctl" ] && [ -x "$dir/etcdutl" ]; then
    log "etcd $version: already built"
    return 0
  fi
  local start=$SECONDS work="$DRUID_CACHE/etcd/.build-$version"
  log "etcd $version: building etcd, etcdctl and etcdutl (once; cached in $dir)"
  rm -rf "$work" "$dir.tmp"
  mkdir -p "$work" "$dir.tmp"
  cat >"$work/go.mod" <<EOF
module druid-rs/etcd-build

go 1.26.0
EOF
  (
    cd "$work"
    go get "go.etcd.io/etcd/server/v3@$version" "go.etcd.io/etcd/etcdctl/v3@$version" \
      "go.etcd.io/etcd/etcdutl/v3@$version" >&2
    local pkg name
    for pkg in server:etcd etcdctl:etcdctl etcdutl:etcdutl; do
      name="${pkg#*:}"
      CGO_ENABLED=0 go_nice build -trimpath \
        -ldflags "-s -w" -o "$dir.tmp/$name" "go.etcd.io/etcd/${pkg%%:*}/v3" >&2
    done
  ) || { rm -rf "$work" "$dir.tmp"; die "etcd $version: the Go build failed"; }
  rm -rf "$work" "$dir"
  mv "$dir.tmp" "$dir"
  log "etcd $version: built in $((SECONDS - start))s"
}

versions=("$@")
[ ${#versions[@]} -gt 0 ] || read -r -a versions <<<"$ETCD_VERSIONS"
for v in "${versions[@]}"; do
  with_lock "etcd-$v" build_etcd_version "$v"
  "$DRUID_CACHE/etcd/$v/etcd" --version >/dev/null 2>&1 \
    || die "etcd $v: '$DRUID_CACHE/etcd/$v/etcd --version' does not run"
  log "etcd $v: $("$DRUID_CACHE/etcd/$v/etcd" --version | head -1)"
done
