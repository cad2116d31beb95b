# Shared by Kordon's scripts: where caches live and how missing tools are installed.
# Sourced, not run.

# Everything heavy and reusable lives outside the checkout, so CI and developers share it.
export KORDON_CACHE="${KORDON_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kordon}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$KORDON_CACHE/target}"
mkdir -p "$KORDON_CACHE"

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# Debian packages Kordon builds and runs with.
KORDON_APT_PACKAGES=(
  pkg-config protobuf-compiler libprotobuf-dev
  libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev libgstrtspserver-1.0-dev
  gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad
  gstreamer1.0-plugins-ugly gstreamer1.0-libav gstreamer1.0-tools
  ffmpeg python3-venv
  mosquitto mosquitto-clients
  openssl
  libfaketime
)

# Installs those of the named Debian packages that are not installed (one apt-get update first).
install_missing_debs() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    log "installing Debian packages: ${missing[*]}"
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

install_apt_packages() {
  install_missing_debs "${KORDON_APT_PACKAGES[@]}"
}

install_rust_components() {
  if ! command -v cargo >/dev/null; then
    echo "cargo is missing: install Rust (rustup) first" >&2
    exit 1
  fi
  rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt
  rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy
}

# A Python venv with gRPC tooling for the end-to-end checks (a client that is not Kordon's own),
# and ONNX Runtime: its CPU wheel carries the libonnxruntime.so that the detector (crates/infer,
# `ort` with load-dynamic) loads at run time, and is the Python reference the detector is checked
# and benchmarked against. `onnx` is for scripts/nanodet_batch.py.
KORDON_VENV="$KORDON_CACHE/venv"
KORDON_ONNXRUNTIME_VERSION='1.32.*'
install_python_tools() {
  if [ ! -x "$KORDON_VENV/bin/python" ]; then
    log "creating $KORDON_VENV"
    python3 -m venv "$KORDON_VENV"
  fi
  if ! "$KORDON_VENV/bin/python" -c 'import grpc, grpc_health, grpc_reflection' 2>/dev/null; then
    log "installing grpcio tools into $KORDON_VENV"
    "$KORDON_VENV/bin/pip" install -q --disable-pip-version-check \
      'grpcio==1.*' 'grpcio-health-checking==1.*' 'grpcio-reflection==1.*' 'protobuf>=5'
  fi
  if ! "$KORDON_VENV/bin/python" -c 'import standardwebhooks' 2>/dev/null; then
    # The alerting check verifies webhook signatures with an implementation that is not Kordon's.
    log "installing standardwebhooks into $KORDON_VENV"
    "$KORDON_VENV/bin/pip" install -q --disable-pip-version-check 'standardwebhooks==1.*'
  fi
  if ! "$KORDON_VENV/bin/python" -c 'import onnx, onnxruntime, numpy' 2>/dev/null; then
    log "installing onnxruntime $KORDON_ONNXRUNTIME_VERSION (CPU) into $KORDON_VENV"
    "$KORDON_VENV/bin/pip" install -q --disable-pip-version-check \
      "onnxruntime==$KORDON_ONNXRUNTIME_VERSION" 'onnx==1.*' 'numpy>=1.26'
  fi
  export_ort_dylib_path
}

# Points ORT_DYLIB_PATH at the ONNX Runtime library inside the venv's wheel, unless it is set.
export_ort_dylib_path() {
  [ -n "${ORT_DYLIB_PATH:-}" ] && return 0
  local lib
  # `|| true`: sourced under `set -euo pipefail`, a venv without the wheel yet (a fresh machine)
  # must not end the caller.
  lib=$(ls "$KORDON_VENV"/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so.* 2>/dev/null | head -n1 || true)
  [ -n "$lib" ] && export ORT_DYLIB_PATH="$lib"
  return 0
}
export_ort_dylib_path

# RTSP servers that are not Kordon's, for e2e/external_rtsp.py: both take a stream published by
# ffmpeg (ANNOUNCE/RECORD) and serve it to readers over RTP/UDP only.
#  - Debian's Perl RTSP::Server (librtsp-server-perl; the rtsp-server-perl package only adds an
#    init script that would start a system daemon on port 554, so the e2e script runs the library).
#  - npm's rtsp-streaming-server (Node), installed once under $KORDON_CACHE.
KORDON_NODE_RTSP_VERSION=2.1.0
KORDON_NODE_RTSP_DIR="$KORDON_CACHE/rtsp-streaming-server-$KORDON_NODE_RTSP_VERSION"
install_external_rtsp_servers() {
  local pkgs=(librtsp-server-perl)
  # npm from Debian only when there is none (the machine may have Node from elsewhere).
  command -v npm >/dev/null || pkgs+=(npm)
  install_missing_debs "${pkgs[@]}"
  if [ ! -f "$KORDON_NODE_RTSP_DIR/node_modules/rtsp-streaming-server/package.json" ]; then
    log "installing rtsp-streaming-server@$KORDON_NODE_RTSP_VERSION (npm) into $KORDON_NODE_RTSP_DIR"
    mkdir -p "$KORDON_NODE_RTSP_DIR"
    npm install --prefix "$KORDON_NODE_RTSP_DIR" --no-audit --no-fund --silent \
      "rtsp-streaming-server@$KORDON_NODE_RTSP_VERSION"
  fi
  export KORDON_NODE_RTSP_MODULES="$KORDON_NODE_RTSP_DIR/node_modules"
}

# The web console (console/, TypeScript + Vite) built into console/dist, which the kordon binary
# embeds when it is compiled (crates/console). Node and npm from Debian when missing; packages
# from the npm registry with the committed lockfile (`npm ci`, only when the lockfile changed);
# rebuilt only when a source, the protos or the lockfile is newer than the last build (the build
# also writes each file's gzip copy, which kordon sends to browsers that accept it).
build_console() {
  local dir="console"
  if ! command -v npm >/dev/null || ! command -v node >/dev/null; then
    install_missing_debs nodejs npm
  fi
  local want have=""
  want=$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)
  [ -f "$dir/node_modules/.kordon-lock" ] && have=$(cat "$dir/node_modules/.kordon-lock")
  if [ "$want" != "$have" ]; then
    log "installing the console's npm packages (npm ci)"
    (cd "$dir" && npm ci --no-audit --no-fund --silent)
    echo "$want" > "$dir/node_modules/.kordon-lock"
  fi
  if [ -f "$dir/dist/index.html" ] && [ -z "$(find "$dir/src" "$dir/scripts" "$dir/index.html" "$dir/package.json" "$dir/package-lock.json" \
      "$dir"/vite.config.* "$dir"/tsconfig*.json proto/kordon -newer "$dir/dist/index.html" -print -quit 2>/dev/null)" ]; then
    return 0
  fi
  log "building the web console (console/dist)"
  (cd "$dir" && npm run --silent build)
}

# A real browser for the console's end-to-end suite (e2e/console_check.py): Debian's Chromium
# and its chromedriver, driven by Selenium (PyPI) from the project venv. Fonts with Cyrillic and
# Turkish letters, so the Bulgarian and Turkish screens render (and screenshot) as people see them.
install_browser() {
  install_missing_debs chromium chromium-driver fonts-dejavu-core
  if ! "$KORDON_VENV/bin/python" -c 'import selenium' 2>/dev/null; then
    log "installing selenium into $KORDON_VENV"
    "$KORDON_VENV/bin/pip" install -q --disable-pip-version-check 'selenium==4.*'
  fi
}
