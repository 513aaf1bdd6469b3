#!/usr/bin/env bash
# Installs what building the host crates needs beyond rustup's toolchain:
# protoc and the protobuf well-known types (etcd-client generates its gRPC
# code at build time and imports google/protobuf/descriptor.proto).
source "$(dirname "${BASH_SOURCE[0]}")/../tests/scripts/lib.sh"
apt_install protobuf-compiler libprotobuf-dev
command -v cargo >/dev/null || die "cargo not found: install Rust with rustup (stable)"
cargo clippy --version >/dev/null 2>&1 || die "cargo clippy is missing: run 'rustup component add clippy'"
cargo fmt --version >/dev/null 2>&1 || die "cargo fmt is missing: run 'rustup component add rustfmt'"
