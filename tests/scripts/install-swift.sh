#!/usr/bin/env bash
# Installs OpenStack Swift (proxy, account, container and object servers)
# and Keystone (identity v3, with the middleware Swift's proxy validates
# tokens with) from Debian's packages:
#   swift-proxy swift-object swift-container swift-account
#   python3-keystone python3-keystonemiddleware
# and python3-swiftclient (the `swift` CLI, the store benchmark's peer).
# Tests run them from /usr/bin/python3 and /usr/bin/swift-* with every
# configuration, ring, database and key in their own server directory
# (tests/support/src/swift/); nothing under /etc is used or changed. The
# packaged Swift services are kept from starting (policy-rc.d) and disabled.
# Usage: install-swift.sh      Idempotent: installed packages are only checked.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SWIFT_PACKAGES=(swift-proxy swift-object swift-container swift-account
  python3-keystone python3-keystonemiddleware python3-swiftclient)
POLICY_RC=/usr/sbin/policy-rc.d

# stop_packaged_swift: stops and disables the Swift services the packages
# may have started; never touches a server some test started itself (those
# run from the tests' own configuration, not as services).
stop_packaged_swift() {
  local sudo="" unit script
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    for unit in $(systemctl list-unit-files 'swift-*.service' --no-legend 2>/dev/null | awk '{print $1}'); do
      case "$unit" in *@.service) continue ;; esac
      $sudo systemctl disable --now "$unit" >/dev/null 2>&1 || true
    done
  else
    for script in /etc/init.d/swift-*; do
      [ -x "$script" ] || continue
      $sudo "$script" stop >/dev/null 2>&1 || true
      if command -v update-rc.d >/dev/null 2>&1; then
        $sudo update-rc.d "$(basename "$script")" disable >/dev/null 2>&1 || true
      fi
    done
  fi
}

install_swift() {
  local p need=""
  for p in "${SWIFT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || need=1
  done
  if [ -n "$need" ]; then
    local created_policy=""
    if [ ! -e "$POLICY_RC" ]; then
      # Forbid service starts while we install; removed again on exit.
      printf '#!/bin/sh\n# temporary, from druid-rs tests/scripts/install-swift.sh\nexit 101\n' >"$POLICY_RC"
      chmod 755 "$POLICY_RC"
      created_policy=1
      trap 'rm -f "$POLICY_RC"' EXIT
    fi
    local start=$SECONDS
    log "swift: installing Debian packages ${SWIFT_PACKAGES[*]}"
    apt_install "${SWIFT_PACKAGES[@]}" || die "apt-get install ${SWIFT_PACKAGES[*]} failed"
    stop_packaged_swift
    if [ -n "$created_policy" ]; then rm -f "$POLICY_RC"; trap - EXIT; fi
    log "swift: installed in $((SECONDS - start))s"
  else
    log "swift: Debian packages already installed"
  fi
  local b
  for b in swift-proxy-server swift-account-server swift-container-server swift-object-server swift-ring-builder; do
    [ -x "/usr/bin/$b" ] || die "/usr/bin/$b missing after installing ${SWIFT_PACKAGES[*]}"
  done
  [ -x /usr/bin/python3 ] || die "/usr/bin/python3 is missing"
  # The servers' Python must load (from any directory: run in a scratch one).
  local scratch; scratch="$(mktemp -d)"
  (cd "$scratch" && /usr/bin/swift-ring-builder "$scratch/test.builder" create 8 1 1 >/dev/null 2>&1) \
    || { rm -rf "$scratch"; die "swift: 'swift-ring-builder create' fails"; }
  (cd "$scratch" && /usr/bin/swift-proxy-server --help >/dev/null 2>&1) \
    || { rm -rf "$scratch"; die "swift: 'swift-proxy-server --help' fails"; }
  rm -rf "$scratch"
  /usr/bin/python3 -c 'import keystone, keystonemiddleware, keystone.server.wsgi, swift.common.wsgi' \
    || die "swift: /usr/bin/python3 cannot import keystone, keystonemiddleware and swift"
  log "swift: $(dpkg-query -W -f='${Version}' swift-proxy), keystone $(dpkg-query -W -f='${Version}' python3-keystone), keystonemiddleware $(dpkg-query -W -f='${Version}' python3-keystonemiddleware)"
}

with_lock swift install_swift
