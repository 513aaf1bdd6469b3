#!/usr/bin/env bash
# CI's check of the plugin author's path, out of tree, with the commands
# the SDK's README documents: instantiates the template in a temporary
# directory outside the workspace (scripts/new-plugin.sh), builds it
# (scripts/build-plugin.sh), and loads the component with the plugin host
# beside the shipped plugins (host/plugin-host/tests/out_of_tree.rs with
# DRUID_EXTRA_PLUGIN): describe, registration under its provider, wiring.
#
# Run by scripts/test.sh after `cargo test --workspace`, whose build the
# test reuses. Needs the shipped plugins (scripts/build-plugins.sh).
source "$(dirname "${BASH_SOURCE[0]}")/../tests/scripts/lib.sh"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$DRUID_CACHE/cargo-target}"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"

bash "$REPO_ROOT/scripts/new-plugin.sh" --provider CiCheck ci-check >/dev/null
component="$(bash "$REPO_ROOT/scripts/build-plugin.sh" druid-plugin-ci-check | tail -n 1)"
[ "$component" = "$tmp/druid-plugin-ci-check/target/plugins/druid_plugin_ci_check.wasm" ] ||
  die "build-plugin.sh printed '$component', not the component's path"

cd "$REPO_ROOT"
DRUID_EXTRA_PLUGIN="$component" DRUID_EXTRA_PLUGIN_PROVIDER=CiCheck \
  nice cargo test --workspace --locked --test out_of_tree >&2
log "ok: a plugin made with scripts/new-plugin.sh builds out of tree and loads"
