#!/usr/bin/env bash
# Builds oss-peer (tests/peers/oss, a Go program on Alibaba Cloud's official
# OSS SDK) and links it into $DRUID_BIN. The OSS plugin's tests run its
# `gateway` mode: an OSS front for MinIO that checks every request's V4
# signature with the SDK's signer (no OSS emulator exists). Benchmarks run
# its upload/download modes as the SDK's side of the comparison.
#   -> $DRUID_CACHE/oss-peer/<hash of go.mod, go.sum, main.go>/oss-peer
# Usage: install-oss-gateway.sh      Idempotent: a cached binary is only (re)linked.
exec bash "$(dirname "${BASH_SOURCE[0]}")/install-peer.sh" oss
