#!/usr/bin/env bash
# Installs etcd 3.4.x (Debian packages etcd-server, etcd-client) and links
# etcd and etcdctl into $DRUID_BIN. The packaged etcd service is kept from
# starting (policy-rc.d) and disabled: tests start their own etcd on their own
# ports, never on 2379.
# Usage: install-etcd.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

POLICY_RC=/usr/sbin/policy-rc.d

# stop_packaged_etcd: stops and disables the etcd service the package may have
# started; never touches an etcd that some test started itself.
stop_packaged_etcd() {
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    $sudo systemctl disable --now etcd.service >/dev/null 2>&1 || true
  else
    if [ -x /etc/init.d/etcd ]; then
      $sudo /etc/init.d/etcd stop >/dev/null 2>&1 || true
    fi
    if command -v update-rc.d >/dev/null 2>&1 && [ -e /etc/init.d/etcd ]; then
      $sudo update-rc.d etcd disable >/dev/null 2>&1 || true
    fi
  fi
}

install_etcd() {
  local created_policy=""
  local p need=""
  for p in etcd-server etcd-client; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || need=1
  done
  if [ -n "$need" ]; then
    if [ ! -e "$POLICY_RC" ]; then
      # Forbid service starts while we install; removed again on exit.
      printf '#!/bin/sh\n# temporary, from druid-rs tests/scripts/install-etcd.sh\nexit 101\n' >"$POLICY_RC"
      chmod 755 "$POLICY_RC"
      created_policy=1
      trap 'rm -f "$POLICY_RC"' EXIT
    fi
    log "etcd: installing Debian packages etcd-server etcd-client"
    apt_install etcd-server etcd-client || die "apt-get install etcd-server etcd-client failed"
    stop_packaged_etcd
    if [ -n "$created_policy" ]; then rm -f "$POLICY_RC"; trap - EXIT; fi
  else
    log "etcd: Debian packages already installed"
  fi
  # A daemon on the default client port would be a leftover of the package.
  if (exec 3<>/dev/tcp/127.0.0.1/2379) 2>/dev/null; then
    stop_packaged_etcd
    sleep 1
    if (exec 3<>/dev/tcp/127.0.0.1/2379) 2>/dev/null; then
      log "etcd: warning: something still listens on 127.0.0.1:2379 (not started by this script; left alone)"
    fi
  fi
  local b
  for b in etcd etcdctl; do
    [ -x "/usr/bin/$b" ] || die "/usr/bin/$b missing after installing etcd-server/etcd-client"
    link_bin "/usr/bin/$b" "$b"
  done
  log "etcd: $("$DRUID_BIN/etcd" --version 2>/dev/null | head -n1)"
}

with_lock etcd install_etcd
