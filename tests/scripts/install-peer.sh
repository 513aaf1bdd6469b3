#!/usr/bin/env bash
# Builds a store plugin's benchmark peer, a Go program on the provider's
# own client library (tests/peers/<name>: azblob, Microsoft's Go SDK for
# Blob storage; gcs, Google's cloud.google.com/go/storage; the clients
# upstream's Go sidecar uses; oss, Alibaba Cloud's OSS SDK), and links it
# into $DRUID_BIN as <name>-peer. Bench tooling, except oss-peer, whose
# `gateway` mode the OSS plugin's tests run (install-oss-gateway.sh, part
# of install-servers.sh); host/plugin-host/benches/store_throughput.rs
# builds the others on first use.
#   -> $DRUID_CACHE/<name>-peer/<hash of go.mod, go.sum, main.go>/<name>-peer
# Usage: install-peer.sh NAME      Idempotent: a cached binary is only (re)linked.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

peer_name="${1:-}"
src="$REPO_ROOT/tests/peers/$peer_name"
[ -n "$peer_name" ] && [ -f "$src/go.mod" ] || die "usage: install-peer.sh NAME (one of: $(ls "$REPO_ROOT/tests/peers" | tr '\n' ' '))"

install_peer() {
  local key
  key="$(cat "$src/go.mod" "$src/go.sum" "$src/main.go" | sha256sum | cut -c1-16)"
  local dir="$DRUID_CACHE/$peer_name-peer/$key"
  if [ -x "$dir/$peer_name-peer" ]; then
    log "$peer_name-peer: $key already built"
  else
    local start=$SECONDS
    log "$peer_name-peer: building (tests/peers/$peer_name)"
    mkdir -p "$dir"
    (cd "$src" && CGO_ENABLED=0 go_nice build -trimpath -ldflags="-s -w" -o "$dir/.$peer_name-peer.tmp" .) ||
      die "$peer_name-peer: go build failed in $src"
    mv "$dir/.$peer_name-peer.tmp" "$dir/$peer_name-peer"
    log "$peer_name-peer: built in $((SECONDS - start))s"
  fi
  link_bin "$dir/$peer_name-peer" "$peer_name-peer"
}

with_lock "$peer_name-peer" install_peer
