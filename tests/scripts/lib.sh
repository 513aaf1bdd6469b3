# shellcheck shell=bash
# Shared settings for the project's scripts. Source it; do not run it.
#
# Everything heavy (Go-built servers, the Go module and build caches, cargo
# target directories, the wasm std) lives under $DRUID_CACHE, outside the
# clone, keyed by version, so repeat runs and fresh clones reuse it.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export REPO_ROOT
export DRUID_CACHE="${DRUID_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/druid-rs}"
# Stable names (symlinks) for the versioned tools; test-support looks here first.
export DRUID_BIN="${DRUID_BIN:-$DRUID_CACHE/bin}"
mkdir -p "$DRUID_CACHE" "$DRUID_BIN"

# Pinned versions of third-party test servers. Changing one rebuilds only it.
export KUBE_VERSION="${KUBE_VERSION:-v1.34.4}"
export MINIO_VERSION="${MINIO_VERSION:-v0.0.0-20260212201848-7aac2a2c5b7c}"
export FAKE_GCS_VERSION="${FAKE_GCS_VERSION:-v1.56.1}"
export AZURITE_VERSION="${AZURITE_VERSION:-3.37.0}"
# MinIO client (no semver tags upstream: a pseudo-version of its main branch).
export MC_VERSION="${MC_VERSION:-v0.0.0-20250313080218-cf909e1063a9}"
# CoreDNS for the real node's cluster DNS (install-node.sh).
export COREDNS_VERSION="${COREDNS_VERSION:-v1.14.7}"
# etcd versions next to Debian's 3.4, built from Go modules
# (install-etcd-versions.sh); tests pick one with DRUID_ETCD_VERSION.
export ETCD_VERSIONS="${ETCD_VERSIONS:-v3.5.36 v3.6.17 v3.7.4}"
# The etcd the product's images ship (scripts/build-images.sh): 3.5, the
# minor version Gardener's etcd-wrapper images run, so clusters moving from
# the Go operator keep their etcd version (3.6 and 3.7 by tag).
export IMAGE_ETCD_VERSION="${IMAGE_ETCD_VERSION:-v3.5.36}"
# The next minor version: the node suite upgrades a running cluster from
# the images' etcd to images built with it (target/images-next).
export NEXT_ETCD_VERSION="${NEXT_ETCD_VERSION:-v3.6.17}"
# Fake nodes for the control plane (install-kube.sh kwok; not built by default).
export KWOK_VERSION="${KWOK_VERSION:-v0.8.0}"

# Go builds keep their module and build caches in the project cache too.
export GOMODCACHE="${GOMODCACHE:-$DRUID_CACHE/go/mod}"
export GOCACHE="${GOCACHE:-$DRUID_CACHE/go/build}"
export GOFLAGS="${GOFLAGS:--modcacherw}"
export GOTOOLCHAIN="${GOTOOLCHAIN:-local}"
# The machine's Go lives here; a non-login shell may not have it on PATH.
if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
  export PATH="/usr/local/go/bin:$PATH"
fi

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# apt_install PKG...: installs Debian packages that are missing (root only).
apt_install() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "apt-get install ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  local stamp="$DRUID_CACHE/.apt-updated"
  if [ ! -f "$stamp" ] || [ -n "$(find "$stamp" -mmin +720 2>/dev/null)" ]; then
    $sudo apt-get -o DPkg::Lock::Timeout=600 update -qq && touch "$stamp"
  fi
  DEBIAN_FRONTEND=noninteractive $sudo apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# with_lock NAME CMD...: runs CMD holding an exclusive lock, so parallel test
# binaries or scripts never build the same thing twice at once.
with_lock() {
  local name="$1"; shift
  mkdir -p "$DRUID_CACHE/locks"
  (
    flock 9
    "$@"
  ) 9>"$DRUID_CACHE/locks/$name.lock"
}

# require_go: dies unless a Go toolchain is on PATH.
require_go() {
  command -v go >/dev/null 2>&1 || die "no Go toolchain on PATH (expected /usr/local/go/bin/go)"
}

# go_nice ARGS...: runs `go ARGS` at low priority, holding the machine-wide
# go-build lock, so only one Go build runs at a time (2 cores, shared).
go_nice() {
  require_go
  with_lock go-build nice -n 10 go "$@"
}

# link_bin TARGET [NAME]: (re)points $DRUID_BIN/NAME (default: TARGET's
# basename) at TARGET, atomically, and logs it.
link_bin() {
  local target="$1" name="${2:-$(basename "$1")}"
  [ -x "$target" ] || die "link_bin: $target is not an executable file"
  local tmp="$DRUID_BIN/.$name.$$"
  ln -sfn "$target" "$tmp"
  mv -fT "$tmp" "$DRUID_BIN/$name"
  log "$DRUID_BIN/$name -> $target"
}

# go_install_to DIR MODULE/PKG@VERSION [go build flags...]: `go install`s a
# command into DIR (as GOBIN), stripped and with -trimpath, staging through
# DIR/.tmp so DIR never holds a half-written binary. $GO_LDFLAGS is appended
# to the linker flags (e.g. "-X pkg.Version=...").
go_install_to() {
  local dir="$1" pkg="$2"; shift 2
  local tmp="$dir/.tmp"
  rm -rf "$tmp"; mkdir -p "$tmp"
  GOBIN="$tmp" CGO_ENABLED="${CGO_ENABLED:-0}" \
    go_nice install -trimpath -ldflags "-s -w${GO_LDFLAGS:+ $GO_LDFLAGS}" "$@" "$pkg" \
    || { rm -rf "$tmp"; die "go install $pkg failed"; }
  local f
  for f in "$tmp"/*; do
    [ -e "$f" ] || die "go install $pkg produced no binary"
    mv -f "$f" "$dir/"
  done
  rm -rf "$tmp"
}

# wasm-tools (validates the plugin components), built from crates.io.
export WASM_TOOLS_VERSION="${WASM_TOOLS_VERSION:-1.263.0}"

# ensure_wasm_tools: installs wasm-tools into the cache (once per version)
# and prints its path.
ensure_wasm_tools() {
  local root="$DRUID_CACHE/wasm-tools/$WASM_TOOLS_VERSION"
  if [ ! -x "$root/bin/wasm-tools" ]; then
    with_lock wasm-tools _install_wasm_tools "$root"
  fi
  ln -sfn "$root/bin/wasm-tools" "$DRUID_BIN/wasm-tools"
  echo "$root/bin/wasm-tools"
}
_install_wasm_tools() {
  local root="$1"
  [ -x "$root/bin/wasm-tools" ] && return 0
  log "building wasm-tools $WASM_TOOLS_VERSION (once; cached in $root)"
  cargo install --quiet --locked "wasm-tools@$WASM_TOOLS_VERSION" \
    --no-default-features --features validate,component,print \
    --root "$root" --target-dir "$DRUID_CACHE/wasm-tools/target" >&2
}

# claim_shared_targets: the cargo target directories in $DRUID_CACHE are
# shared by every clone on this machine (that is what makes a fresh clone's
# run fast). Cargo decides freshness by file times, so when another checkout
# used them last, this one's sources are touched first: its crates are then
# rebuilt from its own sources, never taken from the other checkout's build.
# Registry dependencies stay cached.
claim_shared_targets() {
  local stamp="$DRUID_CACHE/last-checkout"
  if [ "$(cat "$stamp" 2>/dev/null)" != "$REPO_ROOT" ]; then
    log "shared cargo targets were last used by another checkout: marking this one's sources as newer"
    git -C "$REPO_ROOT" ls-files -z | (cd "$REPO_ROOT" && xargs -0 touch -c)
    printf '%s\n' "$REPO_ROOT" >"$stamp.tmp.$$" && mv -f "$stamp.tmp.$$" "$stamp"
  fi
}

# install_crds KUBECTL DIR: applies every CRD manifest in DIR (server-side)
# and waits until each CRD is Established. It polls the condition itself:
# `kubectl wait --for=condition=Established` fails at once while the API
# server has not yet written the new CRD's status.
install_crds() {
  local kubectl="$1" dir="$2" f out name names=() seen deadline
  for f in "$dir"/*.yaml; do
    out="$("$kubectl" apply --server-side -o name -f "$f" 2>&1)" || die "kubectl apply $f: $out"
    names+=($out)
  done
  deadline=$((SECONDS + 60))
  for name in "${names[@]}"; do
    while :; do
      seen="$("$kubectl" get "$name" -o 'jsonpath={.status.conditions[?(@.type=="Established")].status}' 2>&1)" || true
      [ "$seen" = True ] && break
      [ $SECONDS -lt $deadline ] || die "$name is not Established after 60s (last seen: $seen)"
      sleep 0.2
    done
  done
}

# free_disk_gib DIR: the space left on DIR's file system, in whole GiB.
free_disk_gib() {
  df -Pk "$1" | awk 'NR==2 {print int($4 / 1048576)}'
}

# trim_cargo_target DIR BUDGET_GIB: keeps a shared cargo target directory
# from growing without bound. Cargo never deletes what it built: every crate
# hash and dependency version leaves its artifacts, and incremental caches
# (one per crate and hash) grow fastest. When CARGO_INCREMENTAL=0 the
# incremental caches are of no use to this build and go; when DIR is still
# larger than BUDGET_GIB, it is removed whole (the next build is a cold one,
# which is slower but fits; a full disk fails every test instead: the real
# node's kubelet evicts pods when its disk runs low).
trim_cargo_target() {
  local dir="$1" budget="$2" size
  [ -d "$dir" ] || return 0
  if [ "${CARGO_INCREMENTAL:-}" = 0 ]; then
    local inc
    for inc in "$dir"/*/incremental; do
      [ -d "$inc" ] || continue
      log "removing $inc (incremental caches; this build is not incremental)"
      rm -rf "$inc"
    done
  fi
  size=$(( $(du -sk "$dir" | cut -f1) / 1048576 ))
  if [ "$size" -gt "$budget" ]; then
    log "$dir holds ${size} GiB, more than its budget of ${budget} GiB (DRUID_TARGET_BUDGET_GIB): removing it; this build starts cold"
    rm -rf "$dir"
  fi
}
