#!/usr/bin/env bash
# Instantiates the SDK's template (plugins/sdk/template) as a new storage-
# provider plugin crate of its own, outside this repository's workspace.
#
#   scripts/new-plugin.sh [options] NAME [DIR]
#
# NAME: the plugin's name, lower case (e.g. `acme`): the package becomes
# `druid-plugin-NAME`, the component `druid_plugin_NAME.wasm`. DIR defaults
# to ./druid-plugin-NAME and must not exist or be empty.
#
# Options:
#   --provider VALUE   the `storageProvider` value it serves (default: NAME
#                      in CamelCase, e.g. `Acme`)
#   --sdk-path PATH    depend on the SDK at PATH (default: this checkout's
#                      plugins/sdk, as an absolute path)
#   --sdk-git URL      depend on the SDK from a git repository instead
#                      (cargo finds the package in it); with --sdk-rev REV
#                      or --sdk-branch BRANCH to pin it
#
# The crate gets its own [workspace] table (an enclosing workspace does not
# capture it), this checkout's Cargo.lock (the dependency versions the
# project tests with; cargo trims it) and a .gitignore. Build it with
# scripts/build-plugin.sh DIR. Needs python3.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
die() { printf 'new-plugin: %s\n' "$*" >&2; exit 1; }
usage() { sed -n '5,21p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2; }

provider="" sdk_path="$here/plugins/sdk" sdk_git="" sdk_rev="" sdk_branch=""
while [ $# -gt 0 ]; do
  case "$1" in
    --provider) provider="${2:?}"; shift 2 ;;
    --sdk-path) sdk_path="${2:?}"; shift 2 ;;
    --sdk-git) sdk_git="${2:?}"; shift 2 ;;
    --sdk-rev) sdk_rev="${2:?}"; shift 2 ;;
    --sdk-branch) sdk_branch="${2:?}"; shift 2 ;;
    -h|--help) usage ;;
    -*) die "unknown option $1" ;;
    *) break ;;
  esac
done
[ $# -ge 1 ] && [ $# -le 2 ] || usage
name="$1"
[[ "$name" =~ ^[a-z][a-z0-9]*(-[a-z0-9]+)*$ ]] ||
  die "NAME must be lower case letters and digits, words joined by '-' (e.g. acme or my-store), not '$name'"
dir="${2:-./druid-plugin-$name}"
if [ -e "$dir" ] && [ -n "$(ls -A "$dir" 2>/dev/null)" ]; then
  die "$dir exists and is not empty"
fi

# CamelCase of the name: the Rust type and the default provider value.
camel="$(sed -E 's/(^|-)([a-z0-9])/\U\2/g' <<<"$name")"
provider="${provider:-$camel}"
[[ "$provider" =~ ^[A-Za-z0-9][A-Za-z0-9._-]*$ ]] || die "--provider must be a plain word, not '$provider'"
# The env var prefix the template's wiring uses (<P>_APPLICATION_CREDENTIALS).
env_prefix="$(tr 'a-z' 'A-Z' <<<"${name//-/}")"
env_prefix="${env_prefix:0:32}"

if [ -n "$sdk_git" ]; then
  [ -z "$sdk_rev" ] || [ -z "$sdk_branch" ] || die "--sdk-rev and --sdk-branch exclude each other"
  sdk_dep="{ git = \"$sdk_git\"${sdk_rev:+, rev = \"$sdk_rev\"}${sdk_branch:+, branch = \"$sdk_branch\"} }"
else
  [ -f "$sdk_path/Cargo.toml" ] || die "no SDK at $sdk_path (no Cargo.toml)"
  sdk_path="$(cd "$sdk_path" && pwd)"
  sdk_dep="{ path = \"$sdk_path\" }"
fi

template="$here/plugins/sdk/template"
mkdir -p "$dir"
cp -R "$template/src" "$dir/"
[ -f "$here/Cargo.lock" ] && cp "$here/Cargo.lock" "$dir/Cargo.lock"
printf '/target\n' >"$dir/.gitignore"

NAME="$name" PROVIDER="$provider" CAMEL="$camel" ENV_PREFIX="$env_prefix" SDK_DEP="$sdk_dep" \
python3 - "$template/Cargo.toml" "$dir/Cargo.toml" "$dir/src/lib.rs" <<'EOF'
import os, re, sys
src_toml, dst_toml, lib = sys.argv[1:]
name, provider, camel = os.environ["NAME"], os.environ["PROVIDER"], os.environ["CAMEL"]

toml = open(src_toml).read()
toml = re.sub(r'(?m)^# Instantiate it with .*\n(# .*\n)*', "", toml)
toml = toml.replace('name = "druid-plugin-template"', f'name = "druid-plugin-{name}"')
toml = toml.replace('description = "A template for a new druid storage-provider plugin."',
                    f'description = "The {provider} storage provider: a druid plugin."')
# Shipped, not a test-only plugin.
toml = re.sub(r'(?m)^# The template is built.*\n(# .*\n)*test-only = true\n', "", toml)
toml = re.sub(r'(?m)^# scripts/new-plugin.sh points .*\n', "", toml)
toml, n = re.subn(r'(?m)^druid-plugin-sdk = .*$', "druid-plugin-sdk = " + os.environ["SDK_DEP"], toml)
assert n == 1, "the template's SDK dependency line was not found"
assert "workspace = true" not in toml and "test-only" not in toml, toml
toml += """
# A crate of its own: no enclosing workspace captures it.
[workspace]

[profile.release]
# Line tables: a trap's wasm backtrace names files and lines. (The same
# profile as druid-rs's, so scripts/build-plugin.sh shares its cached
# build of the wasm std and the SDK's dependencies.)
debug = "line-tables-only"
"""
open(dst_toml, "w").write(toml)

rs = open(lib).read()
rs = rs.replace('plugin_info("template",', f'plugin_info("{name}",')
rs = rs.replace('"Template"', f'"{provider}"')
rs = rs.replace("the Template provider", f"the {provider} provider")
rs = rs.replace("provider `Template`", f"provider `{provider}`")
rs = rs.replace("TEMPLATE_APPLICATION_CREDENTIALS", os.environ["ENV_PREFIX"] + "_APPLICATION_CREDENTIALS")
rs = rs.replace('secret_contract("TEMPLATE"', 'secret_contract("' + os.environ["ENV_PREFIX"] + '"')
rs = rs.replace("A template storage-provider plugin", f"The {provider} storage-provider plugin")
rs = re.sub(r"\bTemplate", camel, rs)
assert "template" not in rs.lower().replace("sdk's template", ""), "a Template name was left in src/lib.rs"
open(lib, "w").write(rs)
EOF

cat >"$dir/README.md" <<EOF
# druid-plugin-$name

The \`$provider\` storage provider for druid-rs, a wasm32-wasip2 component
made from the SDK's template (see the SDK's README and docs/plugin-api.md in
druid-rs).

    # build (rustup's wasm32-wasip2 target, or Debian's rustc-web)
    <druid-rs>/scripts/build-plugin.sh .        # -> target/plugins/druid_plugin_${name//-/_}.wasm
    # unit tests of pure logic, natively
    cargo test
EOF

printf '%s\n' "$(cd "$dir" && pwd)"
printf 'new-plugin: created %s (package druid-plugin-%s, provider %s); build it with\n  %s/scripts/build-plugin.sh %s\n' \
  "$dir" "$name" "$provider" "$here" "$dir" >&2
