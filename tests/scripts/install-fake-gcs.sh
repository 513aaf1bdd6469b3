#!/usr/bin/env bash
# Builds fake-gcs-server (a GCS emulator for tests) and links it into $DRUID_BIN.
#   go install github.com/fsouza/fake-gcs-server@$FAKE_GCS_VERSION
#   -> $DRUID_CACHE/fake-gcs-server/$FAKE_GCS_VERSION/fake-gcs-server
# Usage: install-fake-gcs.sh      Idempotent: a cached binary is only (re)linked.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

install_fake_gcs() {
  local dir="$DRUID_CACHE/fake-gcs-server/$FAKE_GCS_VERSION"
  if [ -x "$dir/fake-gcs-server" ]; then
    log "fake-gcs-server: $FAKE_GCS_VERSION already built"
  else
    local start=$SECONDS
    log "fake-gcs-server: building $FAKE_GCS_VERSION"
    mkdir -p "$dir"
    (cd "$DRUID_CACHE" && go_install_to "$dir" "github.com/fsouza/fake-gcs-server@$FAKE_GCS_VERSION")
    [ -x "$dir/fake-gcs-server" ] || die "fake-gcs-server: go install did not produce $dir/fake-gcs-server"
    log "fake-gcs-server: built $dir/fake-gcs-server in $((SECONDS - start))s"
  fi
  "$dir/fake-gcs-server" -help >/dev/null 2>&1 || [ $? -eq 2 ] || die "fake-gcs-server: $dir/fake-gcs-server does not run"
  link_bin "$dir/fake-gcs-server" fake-gcs-server
}

with_lock "fake-gcs-server-$FAKE_GCS_VERSION" install_fake_gcs
