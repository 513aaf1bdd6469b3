#!/usr/bin/env bash
# Builds the ABS plugin's benchmark peer (tests/peers/azblob: Microsoft's Go
# SDK for Blob storage, the client upstream's Go sidecar uses) and links it
# into $DRUID_BIN as azblob-peer. Bench tooling only: `make test` does not
# run it; host/plugin-host/benches/store_throughput.rs does, once.
#   -> $DRUID_CACHE/azblob-peer/<hash of go.mod and go.sum>/azblob-peer
# Usage: install-azblob-peer.sh      Idempotent: a cached binary is only (re)linked.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

install_azblob_peer() {
  local src="$REPO_ROOT/tests/peers/azblob"
  local key
  key="$(cat "$src/go.mod" "$src/go.sum" "$src/main.go" | sha256sum | cut -c1-16)"
  local dir="$DRUID_CACHE/azblob-peer/$key"
  if [ -x "$dir/azblob-peer" ]; then
    log "azblob-peer: $key already built"
  else
    local start=$SECONDS
    log "azblob-peer: building (Go SDK azblob, tests/peers/azblob)"
    mkdir -p "$dir"
    (cd "$src" && CGO_ENABLED=0 go_nice build -trimpath -ldflags="-s -w" -o "$dir/.azblob-peer.tmp" .) ||
      die "azblob-peer: go build failed in $src"
    mv "$dir/.azblob-peer.tmp" "$dir/azblob-peer"
    log "azblob-peer: built in $((SECONDS - start))s"
  fi
  link_bin "$dir/azblob-peer" azblob-peer
}

with_lock azblob-peer install_azblob_peer
