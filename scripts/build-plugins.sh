#!/usr/bin/env bash
# Builds every plugin crate (Cargo.toml: [package.metadata.druid] plugin = true)
# to a wasm32-wasip2 component, checks each is a valid component, and copies
# them to $DRUID_PLUGIN_DIR (default: target/plugins; test-only plugins to its
# test-only/ subdirectory). Prints that directory as its last line of stdout.
#
# Toolchain: rustup's wasm32-wasip2 target when it is installed (what plugin
# authors elsewhere have: `rustup target add wasm32-wasip2`). Otherwise the
# Debian fallback of ../shared/toolchain.md (rustc-web with -Zbuild-std),
# which this script installs. DRUID_WASM_TOOLCHAIN=rustup|debian forces one.
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

mode="${DRUID_WASM_TOOLCHAIN:-}"
if [ -z "$mode" ]; then
  if command -v rustup >/dev/null && rustup target list --installed 2>/dev/null | grep -x wasm32-wasip2 >/dev/null; then
    mode=rustup
  else
    mode=debian
  fi
fi

pkg_args=()
for p in "${plugins[@]}"; do pkg_args+=(-p "$p"); done

# The wasm target directory is kept between runs (std is built once per
# compiler) and keyed by the compiler's version.
case "$mode" in
  rustup) rustc_bin=rustc ;;
  debian)
    apt_install rustc-web cargo-web rust-web-src lld-22 wasi-libc
    rustc_bin=/usr/bin/rustc ;;
  *) die "DRUID_WASM_TOOLCHAIN must be rustup or debian, not '$mode'" ;;
esac
export CARGO_TARGET_DIR="$DRUID_CACHE/wasm-target/$mode-$("$rustc_bin" -V | tr -c 'A-Za-z0-9.\n' '_')"

build() {
  case "$mode" in
    rustup)
      log "building ${plugins[*]} with rustup's wasm32-wasip2 target"
      cargo build --quiet --release --target wasm32-wasip2 --manifest-path "$REPO_ROOT/Cargo.toml" "${pkg_args[@]}" >&2
      ;;
    debian)
      log "building ${plugins[*]} with Debian's rustc-web and -Zbuild-std (no rustup wasm32-wasip2 target here)"
      # Debian's cargo/rustc only for this build; RUSTC_BOOTSTRAP enables
      # -Zbuild-std on a stable compiler; wasi-libc is Debian's preview1
      # libc, which wasm-component-ld wraps into a component.
      # This rustc-web does not ship wasm-component-ld (the linker that turns
      # the core module into a component); rustup's stable toolchain does.
      local wcl
      wcl="$(rustc --print sysroot)/lib/rustlib/$(rustc -vV | sed -n 's/^host: //p')/bin/wasm-component-ld"
      [ -x "$wcl" ] || wcl="$(command -v wasm-component-ld || true)"
      [ -n "$wcl" ] || die "wasm-component-ld not found (neither in rustup's toolchain nor on PATH); install it with 'cargo install wasm-component-ld'"
      PATH="/usr/lib/llvm-22/bin:$PATH" \
      CARGO_TARGET_WASM32_WASIP2_LINKER="$wcl" \
      RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 RUSTFLAGS="-L /usr/lib/wasm32-wasi" \
        /usr/bin/cargo build --quiet --release --target wasm32-wasip2 \
        -Zbuild-std=std,panic_abort --manifest-path "$REPO_ROOT/Cargo.toml" "${pkg_args[@]}" >&2
      ;;
  esac
}
with_lock "wasm-build-$mode" build

wasm_tools="$(ensure_wasm_tools)"
built="$CARGO_TARGET_DIR/wasm32-wasip2/release"
for p in "${plugins[@]}"; do
  f="$built/${p//-/_}.wasm"
  [ -f "$f" ] || die "$p: expected $f after the build"
  # A component starts with the magic and the component-model layer/version.
  [ "$(head -c 8 "$f" | od -An -tx1 | tr -d ' \n')" = "0061736d0d000100" ] ||
    die "$p: $f is a core module, not a component (is the target wasm32-wasip2?)"
  "$wasm_tools" validate "$f" || die "$p: $f is not a valid component (wasm-tools validate)"
  # Test-only plugins (hostile ones) go to a subdirectory, so nothing that
  # loads the plugins directory ever picks them up.
  dest="$out"
  [ "${kind[$p]}" = test-only ] && dest="$out/test-only"
  mkdir -p "$dest"
  if ! cmp -s "$f" "$dest/${p//-/_}.wasm"; then
    cp "$f" "$dest/${p//-/_}.wasm.tmp" && mv "$dest/${p//-/_}.wasm.tmp" "$dest/${p//-/_}.wasm"
  fi
  log "ok: $dest/${p//-/_}.wasm ($(stat -c %s "$f") bytes)"
done
echo "$out"
