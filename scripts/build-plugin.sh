#!/usr/bin/env bash
# Builds a plugin crate to a wasm32-wasip2 component, checks it, and copies
# it to OUT_DIR. The one build command for plugin authors, and the one
# scripts/build-plugins.sh (the product's plugins, what every test loads)
# runs.
#
#   scripts/build-plugin.sh [-p PACKAGE]... PATH/TO/CRATE [OUT_DIR]
#
# PATH/TO/CRATE holds a Cargo.toml: a plugin crate of its own (what
# scripts/new-plugin.sh makes) or a workspace, whose packages -p selects.
# OUT_DIR defaults to PATH/TO/CRATE/target/plugins. Each component is
# checked (a component, not a core module; `wasm-tools validate`) and
# copied to OUT_DIR/<crate_name>.wasm; a package marked
# `[package.metadata.druid] test-only = true` goes to OUT_DIR/test-only.
# Prints the path of each component, one per line, on stdout.
#
# Toolchain: rustup's wasm32-wasip2 target when it is installed
# (`rustup target add wasm32-wasip2`). Otherwise Debian's rustc-web with
# -Zbuild-std (../shared/toolchain.md), which this script installs with
# apt; it needs rustup's stable toolchain for `wasm-component-ld`.
# DRUID_WASM_TOOLCHAIN=rustup|debian forces one.
#
# The cargo target directory is $DRUID_CACHE/wasm-target/<toolchain>
# (~/.cache/druid-rs/...), shared by every plugin build on the machine, so
# the wasm std (Debian path) and the SDK's dependencies are built once.
# DRUID_WASM_TARGET_DIR overrides it.
source "$(dirname "${BASH_SOURCE[0]}")/../tests/scripts/lib.sh"

usage() { sed -n '7,8p' "${BASH_SOURCE[0]}" | sed 's/^# *//' >&2; exit 2; }

pkg_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    -p|--package) [ $# -ge 2 ] || usage; pkg_args+=(-p "$2"); shift 2 ;;
    -h|--help) usage ;;
    -*) die "unknown option $1" ;;
    *) break ;;
  esac
done
[ $# -ge 1 ] && [ $# -le 2 ] || usage
crate="$(cd "$1" && pwd)" || die "no directory $1"
manifest="$crate/Cargo.toml"
[ -f "$manifest" ] || die "$crate has no Cargo.toml"
out="${2:-$crate/target/plugins}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"

mode="${DRUID_WASM_TOOLCHAIN:-}"
if [ -z "$mode" ]; then
  if command -v rustup >/dev/null && rustup target list --installed 2>/dev/null | grep -x wasm32-wasip2 >/dev/null; then
    mode=rustup
  else
    mode=debian
  fi
fi

# The wasm target directory is kept between runs (std is built once per
# compiler) and keyed by the compiler's version.
case "$mode" in
  rustup) rustc_bin=rustc ;;
  debian)
    apt_install rustc-web cargo-web rust-web-src lld-22 wasi-libc
    rustc_bin=/usr/bin/rustc ;;
  *) die "DRUID_WASM_TOOLCHAIN must be rustup or debian, not '$mode'" ;;
esac
export CARGO_TARGET_DIR="${DRUID_WASM_TARGET_DIR:-$DRUID_CACHE/wasm-target/$mode-$("$rustc_bin" -V | tr -c 'A-Za-z0-9.\n' '_')}"

# What cargo built: one line per cdylib .wasm artifact, "<file> <manifest_path>".
artifacts="$(mktemp)"
trap 'rm -f "$artifacts"' EXIT
what="${pkg_args[*]:-$crate}"
what="${what//-p /}"

build() {
  local cargo=(cargo) env=() zflags=()
  case "$mode" in
    rustup)
      log "building $what with rustup's wasm32-wasip2 target"
      ;;
    debian)
      log "building $what with Debian's rustc-web and -Zbuild-std (no rustup wasm32-wasip2 target here)"
      # Debian's cargo/rustc only for this build; RUSTC_BOOTSTRAP enables
      # -Zbuild-std on a stable compiler; wasi-libc is Debian's preview1
      # libc, which wasm-component-ld wraps into a component.
      # This rustc-web does not ship wasm-component-ld (the linker that turns
      # the core module into a component); rustup's stable toolchain does.
      local wcl
      wcl="$(rustc --print sysroot 2>/dev/null)/lib/rustlib/$(rustc -vV 2>/dev/null | sed -n 's/^host: //p')/bin/wasm-component-ld"
      [ -x "$wcl" ] || wcl="$(command -v wasm-component-ld || true)"
      [ -n "$wcl" ] || die "wasm-component-ld not found (neither in rustup's toolchain nor on PATH); install it with 'cargo install wasm-component-ld'"
      env=(PATH="/usr/lib/llvm-22/bin:$PATH"
        CARGO_TARGET_WASM32_WASIP2_LINKER="$wcl"
        RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 RUSTFLAGS="-L /usr/lib/wasm32-wasi")
      cargo=(/usr/bin/cargo)
      zflags=(-Zbuild-std=std,panic_abort)
      ;;
  esac
  # Diagnostics go to stderr, rendered; stdout carries cargo's JSON, from
  # which the .wasm artifacts are picked.
  env "${env[@]}" "${cargo[@]}" build --quiet --release --target wasm32-wasip2 "${zflags[@]}" \
    --message-format=json-render-diagnostics --manifest-path "$manifest" "${pkg_args[@]}" |
    python3 -c '
import json, sys
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and "cdylib" in m["target"]["kind"]:
        for f in m.get("filenames", []):
            if f.endswith(".wasm"):
                print(f, m["manifest_path"])
' >"$artifacts"
}
# One wasm build at a time per toolchain (the target directory is shared).
with_lock "wasm-build-$mode" build

[ -s "$artifacts" ] || die "cargo built no .wasm for $what (is the crate's [lib] crate-type [\"cdylib\"]?)"

wasm_tools="$(ensure_wasm_tools)"
while read -r f pkg_manifest; do
  name="$(basename "$f")"
  # A component starts with the magic and the component-model layer/version.
  [ "$(head -c 8 "$f" | od -An -tx1 | tr -d ' \n')" = "0061736d0d000100" ] ||
    die "$name: $f is a core module, not a component (is the target wasm32-wasip2?)"
  "$wasm_tools" validate "$f" || die "$name: $f is not a valid component (wasm-tools validate)"
  # Test-only plugins (hostile ones) go to a subdirectory, so nothing that
  # loads the plugins directory ever picks them up.
  dest="$out"
  if python3 -c 'import sys, tomllib
m = tomllib.load(open(sys.argv[1], "rb"))
sys.exit(0 if ((m.get("package") or {}).get("metadata") or {}).get("druid", {}).get("test-only") else 1)' "$pkg_manifest"; then
    dest="$out/test-only"
  fi
  mkdir -p "$dest"
  if ! cmp -s "$f" "$dest/$name"; then
    cp "$f" "$dest/$name.tmp" && mv "$dest/$name.tmp" "$dest/$name"
  fi
  log "ok: $dest/$name ($(stat -c %s "$f") bytes)"
  echo "$dest/$name"
done <"$artifacts"
