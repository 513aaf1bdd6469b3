#!/usr/bin/env bash
# Installs Azurite (Microsoft's Azure Storage emulator, from the npm registry)
# and links its blob-only server into $DRUID_BIN/azurite-blob.
#   npm install --prefix $DRUID_CACHE/azurite/$AZURITE_VERSION azurite@$AZURITE_VERSION
# Usage: install-azurite.sh      Idempotent: a cached install is only (re)linked.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

install_azurite() {
  command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || apt_install nodejs npm
  command -v node >/dev/null 2>&1 || die "azurite: node is missing"
  local dir="$DRUID_CACHE/azurite/$AZURITE_VERSION"
  local bin="$dir/node_modules/.bin/azurite-blob"
  if [ -x "$bin" ]; then
    log "azurite: $AZURITE_VERSION already installed"
  else
    local start=$SECONDS tmp="$dir.tmp"
    log "azurite: npm install azurite@$AZURITE_VERSION"
    rm -rf "$tmp"; mkdir -p "$tmp"
    npm_config_cache="$DRUID_CACHE/npm" npm install --prefix "$tmp" --no-audit --no-fund \
      --omit=dev --loglevel=error "azurite@$AZURITE_VERSION" >&2 \
      || { rm -rf "$tmp"; die "npm install azurite@$AZURITE_VERSION failed"; }
    [ -x "$tmp/node_modules/.bin/azurite-blob" ] || die "azurite: npm install produced no azurite-blob"
    rm -rf "$dir"; mv "$tmp" "$dir"
    log "azurite: installed into $dir in $((SECONDS - start))s"
  fi
  # --help must work (run in a scratch dir: azurite writes its workspace to cwd).
  local scratch; scratch="$(mktemp -d)"
  (cd "$scratch" && "$bin" --help >/dev/null 2>&1) || { rm -rf "$scratch"; die "azurite: '$bin --help' fails (node $(node --version))"; }
  rm -rf "$scratch"
  link_bin "$bin" azurite-blob
}

with_lock "azurite-$AZURITE_VERSION" install_azurite
