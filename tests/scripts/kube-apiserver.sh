#!/usr/bin/env bash
# Runs a test kube-apiserver in the foreground (exec: the caller's PID is the
# server), bound to one address: 127.0.0.1, or $KUBE_APISERVER_ADDRESS.
#
# Usage: kube-apiserver.sh WORKDIR PORT ETCD_URL [EXTRA kube-apiserver FLAGS...]
#
# Prepares WORKDIR once (kept on later runs, so a restart keeps its identity):
#   pki/ca.{crt,key}           a test CA (EC P-256)
#   pki/apiserver.{crt,key}    serving cert for the address, 127.0.0.1, ::1, localhost and the
#                              `kubernetes` service's names and IP, signed by the CA
#   pki/kubelet-client.{crt,key} the client cert the server shows kubelets (system:masters)
#   pki/sa.{key,pub}           service-account token signing key pair (RSA 2048)
#   token                      the admin bearer token (user admin, group system:masters)
#   token.csv                  --token-auth-file
# and rewrites on every run:
#   kubeconfig                 server https://ADDRESS:PORT, the CA embedded, the token;
#                              works with kubectl and kube-rs
#
# Readiness: GET https://ADDRESS:PORT/readyz with "Authorization: Bearer $(cat WORKDIR/token)"
# and --cacert WORKDIR/pki/ca.crt answers 200 "ok".
#
# Environment:
#   KUBE_APISERVER_BIN           binary (default: $KUBE_VERSION's from install-kube.sh, else
#                                $DRUID_BIN/kube-apiserver)
#   KUBE_ETCD_PREFIX             etcd key prefix (default /druid-<hash of WORKDIR>)
#   KUBE_SERVICE_CIDR            --service-cluster-ip-range (default 10.96.0.0/16)
#   KUBE_DISABLE_ADMISSION       --disable-admission-plugins (default ServiceAccount:
#                                it needs kube-controller-manager's default service accounts)
#   KUBE_APISERVER_ADDRESS       the IPv4 address to bind and advertise (default 127.0.0.1;
#                                the real node's uses its network namespace's address)
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[ $# -ge 3 ] || die "usage: $0 WORKDIR PORT ETCD_URL [EXTRA kube-apiserver FLAGS...]"
WORKDIR="$1" PORT="$2" ETCD_URL="$3"
shift 3
[[ "$PORT" =~ ^[0-9]+$ ]] && [ "$PORT" -gt 0 ] && [ "$PORT" -lt 65536 ] || die "PORT must be a TCP port number, got '$PORT'"
mkdir -p "$WORKDIR"
WORKDIR="$(cd "$WORKDIR" && pwd)"
PKI="$WORKDIR/pki"

# The pinned version's binary, else whatever $DRUID_BIN points at.
APISERVER="${KUBE_APISERVER_BIN:-$DRUID_CACHE/kube/$KUBE_VERSION/bin/kube-apiserver}"
[ -x "$APISERVER" ] || [ -n "${KUBE_APISERVER_BIN:-}" ] || APISERVER="$DRUID_BIN/kube-apiserver"
[ -x "$APISERVER" ] || die "$APISERVER not found: run tests/scripts/install-kube.sh first"
SERVICE_CIDR="${KUBE_SERVICE_CIDR:-10.96.0.0/16}"
ADDRESS="${KUBE_APISERVER_ADDRESS:-127.0.0.1}"
[[ "$ADDRESS" =~ ^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "KUBE_APISERVER_ADDRESS must be an IPv4 address, got '$ADDRESS'"
ETCD_PREFIX="${KUBE_ETCD_PREFIX:-/druid-$(printf '%s' "$WORKDIR" | cksum | cut -d' ' -f1)}"
DISABLE_ADMISSION="${KUBE_DISABLE_ADMISSION-ServiceAccount}"

command -v openssl >/dev/null 2>&1 || apt_install openssl
command -v openssl >/dev/null 2>&1 || die "openssl is missing and could not be installed"

# gen FILE CMD...: runs CMD (which writes "$tmp") unless FILE exists, then
# moves the result into place, so an interrupted run never leaves half a file.
gen() {
  local file="$1"; shift
  [ -s "$file" ] && return 0
  local tmp="$file.tmp"
  "$@" >"$PKI/openssl.log" 2>&1 || { cat "$PKI/openssl.log" >&2; die "generating $file failed"; }
  mv -f "$tmp" "$file"
}

gen_ca() {
  openssl req -x509 -new -nodes -days 3650 -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
    -keyout "$PKI/ca.key.tmp" -out "$tmp" -subj "/CN=druid-test-ca" \
    -config <(printf '[req]\ndistinguished_name=dn\nx509_extensions=ext\n[dn]\n[ext]\n%s\n%s\n%s\n' \
      'basicConstraints=critical,CA:TRUE' 'keyUsage=critical,keyCertSign,cRLSign,digitalSignature' \
      'subjectKeyIdentifier=hash') &&
    mv -f "$PKI/ca.key.tmp" "$PKI/ca.key"
}

gen_serving() {
  openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
    -keyout "$PKI/apiserver.key.tmp" -out "$PKI/apiserver.csr" -subj "/CN=kube-apiserver" \
    -config <(printf '[req]\ndistinguished_name=dn\n[dn]\n') &&
    openssl x509 -req -in "$PKI/apiserver.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" \
      -CAcreateserial -days 3650 -out "$tmp" \
      -extfile <(printf '%s\n' 'basicConstraints=critical,CA:FALSE' \
        'keyUsage=critical,digitalSignature,keyEncipherment' 'extendedKeyUsage=serverAuth' \
        'subjectKeyIdentifier=hash' 'authorityKeyIdentifier=keyid' \
        "subjectAltName=IP:127.0.0.1,IP:::1,IP:${SERVICE_IP},IP:${ADDRESS},DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local") &&
    mv -f "$PKI/apiserver.key.tmp" "$PKI/apiserver.key"
}

# A client certificate the API server shows to kubelets (logs, exec).
gen_kubelet_client() {
  openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
    -keyout "$PKI/kubelet-client.key.tmp" -out "$PKI/kubelet-client.csr" \
    -subj "/O=system:masters/CN=kube-apiserver-kubelet-client" \
    -config <(printf '[req]\ndistinguished_name=dn\n[dn]\n') &&
    openssl x509 -req -in "$PKI/kubelet-client.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" \
      -CAcreateserial -days 3650 -out "$tmp" \
      -extfile <(printf '%s\n' 'basicConstraints=critical,CA:FALSE' \
        'keyUsage=critical,digitalSignature,keyEncipherment' 'extendedKeyUsage=clientAuth') &&
    mv -f "$PKI/kubelet-client.key.tmp" "$PKI/kubelet-client.key"
}

gen_sa() {
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$PKI/sa.key.tmp" &&
    openssl pkey -in "$PKI/sa.key.tmp" -pubout -out "$tmp" &&
    mv -f "$PKI/sa.key.tmp" "$PKI/sa.key"
}

gen_token() {
  openssl rand -hex 32 >"$tmp"
}

# The first address of the service range (the `kubernetes` service's ClusterIP).
service_ip() {
  local net="${SERVICE_CIDR%/*}"
  case "$net" in
    *:*) printf '%s1' "${net%%::*}::" ;;
    *) IFS=. read -r a b c d <<<"$net"; printf '%s.%s.%s.%s' "$a" "$b" "$c" "$((d + 1))" ;;
  esac
}
SERVICE_IP="$(service_ip)"

prepare() {
  umask 077
  mkdir -p "$PKI"
  chmod 700 "$PKI"
  # The CA and the serving cert go together: a new CA means a new serving cert,
  # and so does a new address.
  [ -s "$PKI/ca.crt" ] && [ -s "$PKI/ca.key" ] || rm -f "$PKI/ca.crt" "$PKI/apiserver.crt" "$PKI/kubelet-client.crt"
  [ -s "$PKI/kubelet-client.key" ] || rm -f "$PKI/kubelet-client.crt"
  [ "$(cat "$PKI/address" 2>/dev/null)" = "$ADDRESS" ] || rm -f "$PKI/apiserver.crt"
  [ -s "$PKI/apiserver.key" ] || rm -f "$PKI/apiserver.crt"
  [ -s "$PKI/sa.key" ] || rm -f "$PKI/sa.pub"
  gen "$PKI/ca.crt" gen_ca
  gen "$PKI/apiserver.crt" gen_serving
  printf '%s\n' "$ADDRESS" >"$PKI/address"
  gen "$PKI/kubelet-client.crt" gen_kubelet_client
  gen "$PKI/sa.pub" gen_sa
  gen "$WORKDIR/token" gen_token
  rm -f "$PKI/openssl.log" "$PKI/apiserver.csr" "$PKI/kubelet-client.csr"
  local token
  token="$(cat "$WORKDIR/token")"
  printf '%s,admin,admin,"system:masters"\n' "$token" >"$WORKDIR/token.csv.tmp"
  mv -f "$WORKDIR/token.csv.tmp" "$WORKDIR/token.csv"
  cat >"$WORKDIR/kubeconfig.tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: druid-test
  cluster:
    server: https://$ADDRESS:$PORT
    certificate-authority-data: $(base64 -w0 <"$PKI/ca.crt")
users:
- name: admin
  user:
    token: $token
contexts:
- name: druid-test
  context:
    cluster: druid-test
    user: admin
    namespace: default
current-context: druid-test
EOF
  chmod 600 "$WORKDIR/kubeconfig.tmp"
  mv -f "$WORKDIR/kubeconfig.tmp" "$WORKDIR/kubeconfig"
}

# Prepare under a lock on WORKDIR, released before exec (fd 9 is not inherited).
(
  flock 9
  prepare
) 9>"$WORKDIR/.prepare.lock"

extra=()
[ -z "$DISABLE_ADMISSION" ] || extra+=(--disable-admission-plugins="$DISABLE_ADMISSION")

log "kube-apiserver: https://$ADDRESS:$PORT etcd=$ETCD_URL prefix=$ETCD_PREFIX kubeconfig=$WORKDIR/kubeconfig"
exec "$APISERVER" \
  --bind-address="$ADDRESS" \
  --advertise-address="$ADDRESS" \
  --secure-port="$PORT" \
  --cert-dir="$PKI" \
  --tls-cert-file="$PKI/apiserver.crt" \
  --tls-private-key-file="$PKI/apiserver.key" \
  --client-ca-file="$PKI/ca.crt" \
  --kubelet-client-certificate="$PKI/kubelet-client.crt" \
  --kubelet-client-key="$PKI/kubelet-client.key" \
  --token-auth-file="$WORKDIR/token.csv" \
  --authorization-mode=RBAC \
  --service-account-issuer=https://kubernetes.default.svc.cluster.local \
  --service-account-key-file="$PKI/sa.pub" \
  --service-account-signing-key-file="$PKI/sa.key" \
  --service-cluster-ip-range="$SERVICE_CIDR" \
  --etcd-servers="$ETCD_URL" \
  --etcd-prefix="$ETCD_PREFIX" \
  --allow-privileged=true \
  --enable-priority-and-fairness=false \
  --profiling=false \
  "${extra[@]}" \
  "$@"
