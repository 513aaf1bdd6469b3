#!/usr/bin/env bash
# Builds the product's container images as OCI archives, without a container
# daemon (umoci): each image is the binaries, the shared libraries they load
# (as `ldd` lists them), /etc/passwd and /etc/group with the non-root user
# 65532 it runs as, the CA bundle and an empty /tmp. No shell, no package
# manager.
#
#   scripts/build-images.sh [--profile release|dev] [--out DIR]
#       builds `druid`, `etcdbr` and `etcd-wrapper` with cargo and writes
#       DIR/druid.tar       ghcr.io/druid-rs/druid:<version>   (operator; plugins built in)
#       DIR/etcdbr.tar      ghcr.io/druid-rs/etcdbr:<version>  (sidecar and jobs; etcd,
#                           etcdutl for restores)
#       DIR/etcd.tar        ghcr.io/druid-rs/etcd:<version>    (etcd + our wrapper)
#       DIR/plugins.tar     ghcr.io/druid-rs/plugins:<version> (the base of a plugins
#                           image: druid-install-plugins and an empty /plugins)
#       each with DIR/<name>.ref holding its reference. Default: release
#       profile, DIR = target/images. <version> is the workspace version.
#       The etcd inside is $IMAGE_ETCD_VERSION (tests/scripts/lib.sh:
#       v3.5.36), built from Go modules by tests/scripts/install-etcd-versions.sh.
#   scripts/build-images.sh [...] --etcd-version VERSION
#       the same with etcd VERSION (v3.6.17, v3.7.4, or 3.4 for Debian's
#       3.4.23): tags <version>-etcd<VERSION>. The sidecar image restores
#       with that version's etcdutl (ETCDBR_ETCDCTL_BINARY; 3.6 removed
#       `etcdctl snapshot restore`), 3.4's with etcdctl. Use another --out.
#   scripts/build-images.sh --plugins-image REF OUT.tar PLUGIN.wasm...
#       a plugins image: the plugins in /plugins and druid-install-plugins,
#       which the operator runs as each etcd pod's init container
#       (--plugins-image REF) to copy them into the sidecar's plugins
#       directory. The same as `FROM ghcr.io/druid-rs/plugins:<version>` plus
#       `COPY *.wasm /plugins/` (deploy/images/Containerfile, target plugins).
#   scripts/build-images.sh --one REF OUT.tar SRC:DST... -- ENTRYPOINT...
#       one image from the given files (used for the test node's pause image).
#
# Load an archive with `ctr -n k8s.io images import --index-name REF X.tar`,
# `skopeo copy oci-archive:X.tar docker-daemon:REF`, or `podman load -i X.tar`.
# Users who build with their usual tools use deploy/images/*.Containerfile.
source "$(dirname "${BASH_SOURCE[0]}")/../tests/scripts/lib.sh"
cd "$REPO_ROOT"

IMAGE_UID=65532
# Extra environment of the image one_image builds next (NAME=VALUE...).
IMAGE_ENV=()
REGISTRY="${DRUID_IMAGE_REGISTRY:-ghcr.io/druid-rs}"

# version: the workspace's version (Cargo.toml [workspace.package]).
version() {
  sed -n '/^\[workspace.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' Cargo.toml | head -n1
}

# add_file ROOT SRC DST: copies SRC to ROOT/DST, and for an ELF binary the
# libraries it loads (same paths as on this machine).
add_file() {
  local root="$1" src="$2" dst="$3" lib
  [ -f "$src" ] || die "$src does not exist"
  mkdir -p "$root/$(dirname "$dst")"
  cp -L "$src" "$root/$dst"
  # Debug info stays out of images (dev builds carry a lot of it).
  if head -c 4 "$src" | grep -q 'ELF'; then strip --strip-debug "$root/$dst" 2>/dev/null || true; fi
  if head -c 4 "$src" | grep -q 'ELF' && ldd "$src" >/dev/null 2>&1; then
    for lib in $(ldd "$src" | grep -o '/[^ ]*'); do
      [ -e "$root/$lib" ] && continue
      mkdir -p "$root/$(dirname "$lib")"
      cp -L "$lib" "$root/$lib"
    done
  fi
}

# base_files ROOT: the files every image has.
base_files() {
  local root="$1"
  mkdir -p "$root/etc" "$root/tmp" "$root/etc/ssl/certs"
  chmod 1777 "$root/tmp"
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:%s:%s:nonroot:/home/nonroot:/sbin/nologin\n' \
    "$IMAGE_UID" "$IMAGE_UID" >"$root/etc/passwd"
  printf 'root:x:0:\nnonroot:x:%s:\n' "$IMAGE_UID" >"$root/etc/group"
  mkdir -p "$root/home/nonroot"
  chown "$IMAGE_UID:$IMAGE_UID" "$root/home/nonroot"
  if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
    cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"
  fi
}

# one_image REF OUT.tar SRC:DST... -- ENTRYPOINT...
one_image() {
  local ref="$1" out="$2"; shift 2
  local files=() entry=()
  while [ $# -gt 0 ] && [ "$1" != "--" ]; do files+=("$1"); shift; done
  [ "${1:-}" = "--" ] || die "one_image: missing -- before the entrypoint"
  shift
  entry=("$@")
  [ ${#entry[@]} -gt 0 ] || die "one_image: no entrypoint"
  command -v umoci >/dev/null 2>&1 || apt_install umoci
  local work tag="${ref##*:}" f
  work="$(mktemp -d)"
  # shellcheck disable=SC2064
  trap "rm -rf '$work'" RETURN
  local root="$work/rootfs"
  mkdir -p "$root"
  base_files "$root"
  for f in "${files[@]}"; do add_file "$root" "${f%%:*}" "${f#*:}"; done
  umoci init --layout "$work/oci"
  umoci new --image "$work/oci:$tag"
  umoci unpack --image "$work/oci:$tag" "$work/bundle" >/dev/null
  cp -a "$root/." "$work/bundle/rootfs/"
  umoci repack --image "$work/oci:$tag" "$work/bundle"
  local args=(--image "$work/oci:$tag" --config.user "$IMAGE_UID:$IMAGE_UID"
    --config.workingdir / --config.env PATH=/usr/local/bin:/usr/bin:/bin
    --config.env HOME=/home/nonroot --author druid-rs
    --config.label "org.opencontainers.image.ref.name=$ref"
    --config.label "org.opencontainers.image.source=druid-rs")
  for f in "${IMAGE_ENV[@]}"; do args+=(--config.env "$f"); done
  for f in "${entry[@]}"; do args+=(--config.entrypoint "$f"); done
  umoci config "${args[@]}"
  umoci gc --layout "$work/oci"
  mkdir -p "$(dirname "$out")"
  tar -C "$work/oci" -cf "$out.tmp" .
  mv -f "$out.tmp" "$out"
  printf '%s\n' "$ref" >"${out%.tar}.ref"
  log "image $ref -> $out ($(du -h "$out" | cut -f1))"
}

if [ "${1:-}" = "--plugins-image" ]; then
  shift
  [ $# -ge 3 ] || die "usage: $0 --plugins-image REF OUT.tar PLUGIN.wasm..."
  ref="$1" out="$2"; shift 2
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$DRUID_CACHE/cargo-target}"
  # DRUID_IMAGE_PROFILE=dev: the dev build the tests already have.
  case "${DRUID_IMAGE_PROFILE:-release}" in release) pdir=release ;; dev) pdir=debug ;;
    *) die "DRUID_IMAGE_PROFILE is release or dev" ;; esac
  nice cargo build --quiet --locked --profile "${DRUID_IMAGE_PROFILE:-release}" --bin druid-install-plugins
  files=("$CARGO_TARGET_DIR/$pdir/druid-install-plugins:/usr/local/bin/druid-install-plugins")
  for f in "$@"; do
    case "$f" in *.wasm) ;; *) die "$f: a plugin is a .wasm file" ;; esac
    files+=("$f:/plugins/$(basename "$f")")
  done
  one_image "$ref" "$out" "${files[@]}" -- /usr/local/bin/druid-install-plugins
  exit 0
fi

if [ "${1:-}" = "--one" ]; then
  shift
  [ $# -ge 4 ] || die "usage: $0 --one REF OUT.tar SRC:DST... -- ENTRYPOINT..."
  one_image "$@"
  exit 0
fi

profile=release
out_dir="$REPO_ROOT/target/images"
etcd_version="$IMAGE_ETCD_VERSION"
while [ $# -gt 0 ]; do
  case "$1" in
    --profile) profile="$2"; shift 2 ;;
    --out) out_dir="$2"; shift 2 ;;
    --etcd-version) etcd_version="v${2#v}"; shift 2 ;;
    *) die "usage: $0 [--profile release|dev] [--out DIR] [--etcd-version VERSION] | --plugins-image REF OUT.tar PLUGIN.wasm... | --one REF OUT.tar SRC:DST... -- ENTRYPOINT..." ;;
  esac
done
case "$profile" in release) dir=release ;; dev) dir=debug ;; *) die "--profile is release or dev, got '$profile'" ;; esac

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$DRUID_CACHE/cargo-target}"
bash tests/scripts/install-servers.sh etcd >/dev/null
bash scripts/build-plugins.sh >/dev/null
log "building druid, etcdbr, etcd-wrapper and druid-install-plugins ($profile profile)"
nice cargo build --quiet --locked --profile "$profile" --bin druid --bin etcdbr --bin etcd-wrapper \
  --bin druid-install-plugins
bin="$CARGO_TARGET_DIR/$dir"
v="$(version)"
if [ "$etcd_version" = v3.4 ]; then
  # Debian's (install-etcd.sh): etcdctl restores.
  etcd="$(readlink -f "$DRUID_BIN/etcd")"
  restore_tool=("$(readlink -f "$DRUID_BIN/etcdctl"):/usr/local/bin/etcdctl")
  sidecar_env=()
else
  bash tests/scripts/install-etcd-versions.sh "$etcd_version" >/dev/null
  etcd="$DRUID_CACHE/etcd/$etcd_version/etcd"
  restore_tool=("$DRUID_CACHE/etcd/$etcd_version/etcdutl:/usr/local/bin/etcdutl")
  sidecar_env=(ETCDBR_ETCDCTL_BINARY=/usr/local/bin/etcdutl)
fi
[ "$etcd_version" = "$IMAGE_ETCD_VERSION" ] || v="$v-etcd${etcd_version#v}"
log "images $v with etcd $("$etcd" --version | head -1 | sed 's/.*: *//')"

one_image "$REGISTRY/druid:$v" "$out_dir/druid.tar" \
  "$bin/druid:/usr/local/bin/druid" -- /usr/local/bin/druid
IMAGE_ENV=("${sidecar_env[@]}")
one_image "$REGISTRY/etcdbr:$v" "$out_dir/etcdbr.tar" \
  "$bin/etcdbr:/usr/local/bin/etcdbr" "$etcd:/usr/local/bin/etcd" "${restore_tool[@]}" \
  -- /usr/local/bin/etcdbr
IMAGE_ENV=()
one_image "$REGISTRY/etcd:$v" "$out_dir/etcd.tar" \
  "$bin/etcd-wrapper:/usr/local/bin/etcd-wrapper" "$etcd:/usr/local/bin/etcd" \
  -- /usr/local/bin/etcd-wrapper
one_image "$REGISTRY/plugins:$v" "$out_dir/plugins.tar" \
  "$bin/druid-install-plugins:/usr/local/bin/druid-install-plugins" \
  -- /usr/local/bin/druid-install-plugins
