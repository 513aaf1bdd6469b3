#!/usr/bin/env bash
# Builds every plugin crate (Cargo.toml: [package.metadata.druid] plugin = true)
# to a wasm32-wasip2 component, checks each is a valid component, and copies
# them to $DRUID_PLUGIN_DIR (default: target/plugins; test-only plugins to its
# test-only/ subdirectory). Prints that directory as its last line of stdout.
#
# The build itself is scripts/build-plugin.sh (the command plugin authors
# run on their own crates): rustup's wasm32-wasip2 target when it is
# installed, else Debian's rustc-web with -Zbuild-std;
# DRUID_WASM_TOOLCHAIN=rustup|debian forces one.
#
# Test-only plugins (tests/plugins/*, e.g. hostile ones that prove the
# sandbox) are workspace crates marked the same way and are built too.
source "$(dirname "${BASH_SOURCE[0]}")/../tests/scripts/lib.sh"

out="${DRUID_PLUGIN_DIR:-$REPO_ROOT/target/plugins}"
claim_shared_targets
mkdir -p "$out"

# The plugin crates, from cargo metadata.
mapfile -t entries < <(cargo metadata --no-deps --format-version 1 --manifest-path "$REPO_ROOT/Cargo.toml" |
  python3 -c '
import json, sys
for p in json.load(sys.stdin)["packages"]:
    meta = (p.get("metadata") or {}).get("druid") or {}
    if meta.get("plugin"):
        print(p["name"], "test-only" if meta.get("test-only") else "shipped")
' | sort)
plugins=()
declare -A kind
for e in "${entries[@]}"; do
  plugins+=("${e% *}")
  kind["${e% *}"]="${e#* }"
done
[ ${#plugins[@]} -gt 0 ] || die "no plugin crates found (none has [package.metadata.druid] plugin = true)"

pkg_args=()
for p in "${plugins[@]}"; do pkg_args+=(-p "$p"); done

# One cargo build of them all (one feature resolution, one lock), with the
# per-crate command plugin authors use; it prints each component's path.
built="$(bash "$REPO_ROOT/scripts/build-plugin.sh" "${pkg_args[@]}" "$REPO_ROOT" "$out")"
for p in "${plugins[@]}"; do
  dest="$out"
  [ "${kind[$p]}" = test-only ] && dest="$out/test-only"
  grep -qx "$dest/${p//-/_}.wasm" <<<"$built" || die "$p: no component at $dest/${p//-/_}.wasm after the build"
done
echo "$out"
