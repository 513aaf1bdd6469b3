#!/usr/bin/env bash
# Builds the MinIO server (S3 for tests) and the MinIO client `mc`, and links
# them into $DRUID_BIN.
#
# Usage: install-minio.sh [minio] [mc]     (default: both)
#   minio: go install github.com/minio/minio@$MINIO_VERSION -> $DRUID_CACHE/minio/$MINIO_VERSION/minio
#   mc:    go install github.com/minio/mc@$MC_VERSION       -> $DRUID_CACHE/mc/$MC_VERSION/mc
# Idempotent: a binary already in the cache is only (re)linked.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# commit_of PSEUDO_VERSION: the commit hash of a Go pseudo-version, else empty.
commit_of() {
  case "$1" in v*-*[0-9]-[0-9a-f]*) printf '%s' "${1##*-}" ;; esac
}

# install_go_tool NAME MODULE VERSION LDFLAGS [VERIFY-ARGS...]
install_go_tool() {
  local name="$1" module="$2" version="$3" ldflags="$4"; shift 4
  local dir="$DRUID_CACHE/$name/$version"
  if [ -x "$dir/$name" ]; then
    log "$name: $version already built"
  else
    local start=$SECONDS
    log "$name: building $module@$version"
    mkdir -p "$dir"
    (cd "$DRUID_CACHE" && GO_LDFLAGS="$ldflags" go_install_to "$dir" "$module@$version")
    [ -x "$dir/$name" ] || die "$name: go install $module@$version did not produce $dir/$name"
    log "$name: built $dir/$name in $((SECONDS - start))s"
  fi
  "$dir/$name" "$@" >/dev/null 2>&1 || die "$name: '$dir/$name $*' does not run"
  link_bin "$dir/$name" "$name"
}

# year_of PSEUDO_VERSION: the commit year of a Go pseudo-version, else empty.
year_of() {
  case "$1" in v*-[0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9]-*)
    local t="${1%-*}"; t="${t##*-}"; printf '%s' "${t:0:4}" ;;
  esac
}

install_minio() {
  local c y; c="$(commit_of "$MINIO_VERSION")"; y="$(year_of "$MINIO_VERSION")"
  install_go_tool minio github.com/minio/minio "$MINIO_VERSION" \
    "${c:+-X github.com/minio/minio/cmd.CommitID=$c -X github.com/minio/minio/cmd.ShortCommitID=$c}${y:+ -X github.com/minio/minio/cmd.CopyrightYear=$y}" --version
}

install_mc() {
  local c y; c="$(commit_of "$MC_VERSION")"; y="$(year_of "$MC_VERSION")"
  install_go_tool mc github.com/minio/mc "$MC_VERSION" \
    "${c:+-X github.com/minio/mc/cmd.CommitID=$c}${y:+ -X github.com/minio/mc/cmd.CopyrightYear=$y}" --version
}

targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(minio mc)
for t in "${targets[@]}"; do
  case "$t" in
    minio) with_lock "minio-$MINIO_VERSION" install_minio ;;
    mc) with_lock "mc-$MC_VERSION" install_mc ;;
    *) die "unknown target '$t' (known: minio mc)" ;;
  esac
done
