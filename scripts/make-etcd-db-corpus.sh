#!/usr/bin/env bash
# Regenerates plugins/etcd-db/tests/corpus: a full snapshot and its deltas
# written by a real etcd and the real etcdbr sidecar (Local store), then
# decompressed. See the corpus README.
source "$(dirname "${BASH_SOURCE[0]}")/../tests/scripts/lib.sh"
cd "$REPO_ROOT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$DRUID_CACHE/cargo-target}"
bash tests/scripts/install-servers.sh >/dev/null
bash scripts/build-plugins.sh >/dev/null
cargo build -q -p druid-backup-restore --bin etcdbr
etcdbr="$CARGO_TARGET_DIR/debug/etcdbr"
work="$(mktemp -d)"
trap 'kill $(jobs -p) 2>/dev/null; wait; rm -rf "$work"' EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cp_=$(port); pp=$(port); sp=$(port)
ep="http://127.0.0.1:$cp_"
"$DRUID_BIN/etcd" --name m0 --data-dir "$work/data" --listen-client-urls "$ep" \
  --advertise-client-urls "$ep" --listen-peer-urls "http://127.0.0.1:$pp" \
  --initial-advertise-peer-urls "http://127.0.0.1:$pp" \
  --initial-cluster "m0=http://127.0.0.1:$pp" >"$work/etcd.log" 2>&1 &
ctl() { ETCDCTL_API=3 "$DRUID_BIN/etcdctl" --endpoints="$ep" "$@"; }
for _ in $(seq 50); do ctl endpoint health >/dev/null 2>&1 && break; sleep 0.2; done
mkdir -p "$work/store/corpus"
LOCAL_STORE_ROOT="$work/store" "$etcdbr" server --endpoints="$ep" \
  --storage-provider=Local --store-container=corpus --store-prefix=etcd \
  --server-port="$sp" --server-address=127.0.0.1 --delta-snapshot-period=1s \
  --schedule="0 0 1 1 *" --garbage-collection-period=0s \
  --data-dir="$work/data" --snapstore-temp-directory="$work/tmp" \
  --plugins-dir="$REPO_ROOT/target/plugins" >"$work/etcdbr.log" 2>&1 &
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$sp/healthz" >/dev/null && break; sleep 0.2; done
# Before the full snapshot.
ctl put /registry/a one >/dev/null
ctl put /registry/a two >/dev/null
ctl txn <<'TXN' >/dev/null

put /registry/b bee
put /registry/c see


TXN
ctl del /registry/c >/dev/null
l1=$(ctl lease grant 600 | awk '{print $2}')
l2=$(ctl lease grant 900 | awk '{print $2}')
ctl put /leases/one x --lease="$l1" >/dev/null
ctl put /leases/two y --lease="$l2" >/dev/null
curl -sf "http://127.0.0.1:$sp/snapshot/full" >/dev/null
# Deltas.
ctl put /registry/d dee >/dev/null
sleep 1.5
ctl txn <<'TXN' >/dev/null

put /registry/e e
del /registry/a


TXN
ctl put /registry/prefix/1 1 >/dev/null
ctl put /registry/prefix/2 2 >/dev/null
ctl del /registry/prefix/ --prefix >/dev/null
sleep 1.5
l3=$(ctl lease grant 300 | awk '{print $2}')
ctl put /leases/three z --lease="$l3" >/dev/null
ctl lease revoke "$l1" >/dev/null
rev=$(ctl endpoint status -w json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["Status"]["header"]["revision"])')
for _ in $(seq 100); do
  last=$(ls "$work/store/corpus/etcd/v2" | sed -n 's/^Incr-[0-9]*-0*\([0-9]*\)-.*/\1/p' | sort -n | tail -1)
  [ "${last:-0}" -ge "$rev" ] && break; sleep 0.2
done
out="$REPO_ROOT/plugins/etcd-db/tests/corpus"
rm -f "$out"/Full-* "$out"/Incr-*
full=$(ls "$work/store/corpus/etcd/v2" | grep '^Full-' | sort | tail -1)
full_rev=$(echo "$full" | cut -d- -f3 | sed 's/^0*//')
for f in $(ls "$work/store/corpus/etcd/v2"); do
  case "$f" in
    "$full") ;;
    Incr-*) s=$(echo "$f" | cut -d- -f2 | sed 's/^0*//'); [ "$s" -gt "$full_rev" ] || continue ;;
    *) continue ;;
  esac
  gzip -dc "$work/store/corpus/etcd/v2/$f" >"$out/${f%.gz}"
done
log "corpus: $(ls "$out" | grep -c -e '^Full-' -e '^Incr-') files in $out (revision $rev)"
