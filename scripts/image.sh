#!/usr/bin/env bash
# Builds the Kordon image from ./Containerfile without a container engine or registry access,
# and writes it as an OCI archive (what `podman load`, `skopeo copy oci-archive:...` and
# `ctr images import` read):
#
#   scripts/image.sh [build] [--profile release|dev] [--binary PATH] [--out FILE]
#       builds `kordon` here (the web console embedded), then the Containerfile's runtime stage
#       with buildah (chroot isolation) on a Debian bookworm base made by mmdebstrap from this
#       machine's apt sources; the Containerfile's `build` stage is replaced by the binary and
#       ONNX Runtime library built here (`--build-context build=...`).
#       Default --out: $KORDON_CACHE/image/kordon-<version>.oci.tar. `--profile dev` packs the
#       debug build the tests already compiled (debug info stripped): CI's image check uses it;
#       publish release images. `--binary PATH` packs a `kordon` built elsewhere instead.
#   scripts/image.sh unpack ARCHIVE DIR
#       unpacks an archive's root filesystem into DIR/rootfs (and its OCI config into
#       DIR/config.json), as a container runtime would; e2e/image_check.py runs Kordon from it.
#
# Everything heavy is cached under $KORDON_CACHE/image: the base image, buildah's storage (overlay)
# and its layer cache (the apt step reruns only when the base or that step changes).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$HERE/lib.sh"

IMAGE_DIR="$KORDON_CACHE/image"
BASE_IMAGE="localhost/kordon-base:bookworm"
REPOSITORY="kordon/kordon"
VERSION="$(sed -n '/^\[workspace.package\]/,/^\[/{s/^version = "\(.*\)"/\1/p}' "$ROOT/Cargo.toml")"
mkdir -p "$IMAGE_DIR"

die() { echo "image.sh: $*" >&2; exit 1; }

bah() {
  buildah --root "$IMAGE_DIR/storage" --runroot "${XDG_RUNTIME_DIR:-/run}/kordon-buildah" \
    --storage-driver overlay "$@"
}

install_image_tools() {
  install_missing_debs mmdebstrap buildah umoci binutils
}

# This machine's apt sources (deb822 or one-line), as one file for mmdebstrap: the image's
# packages come from the same archive as the host's, and no mirror is written into the repo.
host_sources() {
  local out="$IMAGE_DIR/sources" f
  : > "$out"
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] && { cat "$f"; echo; } >> "$out"
  done
  # One format per file: one-line sources only where there are no deb822 ones.
  if [ ! -s "$out" ]; then
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
      [ -f "$f" ] && { grep -E '^deb ' "$f" || true; } >> "$out"
    done
  fi
  [ -s "$out" ] || die "no apt sources found on this machine (/etc/apt/sources.list*)"
  echo "$out"
}

# The Debian bookworm base (minbase: apt, no docs), made once and kept in buildah's storage.
ensure_base() {
  if bah inspect --type image "$BASE_IMAGE" >/dev/null 2>&1; then
    return 0
  fi
  local sources tar ctr
  sources="$(host_sources)"
  tar="$IMAGE_DIR/base-bookworm.tar"
  log "making the Debian bookworm base with mmdebstrap (once; cached as $BASE_IMAGE)"
  mmdebstrap --variant=minbase --quiet \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/info/*' \
    bookworm "$IMAGE_DIR/base-bookworm.part.tar" "$sources"
  mv "$IMAGE_DIR/base-bookworm.part.tar" "$tar"
  ctr="$(bah from scratch)"
  bah add "$ctr" "$tar" / >/dev/null
  bah config --cmd /bin/bash "$ctr"
  bah commit --quiet "$ctr" "$BASE_IMAGE" >/dev/null
  bah rm "$ctr" >/dev/null
  rm -f "$tar"
}

build() {
  local profile=release out="" bin=""
  while [ $# -gt 0 ]; do
    case "$1" in
      --profile) profile="${2:?--profile needs release or dev}"; shift 2 ;;
      --binary) bin="${2:?--binary needs a file}"; shift 2 ;;
      --out) out="${2:?--out needs a file}"; shift 2 ;;
      *) die "unknown option $1 (see the top of scripts/image.sh)" ;;
    esac
  done
  case "$profile" in release|dev) ;; *) die "--profile is release or dev, not $profile" ;; esac
  out="${out:-$IMAGE_DIR/kordon-$VERSION.oci.tar}"

  # The Containerfile's own build stage downloads the same ONNX Runtime as the project venv.
  local ort_arg
  ort_arg="$(sed -n 's/^ARG ONNXRUNTIME_VERSION=//p' "$ROOT/Containerfile")"
  [ "$ort_arg" = "$KORDON_ONNXRUNTIME_VERSION" ] ||
    die "Containerfile's ONNXRUNTIME_VERSION ($ort_arg) differs from scripts/lib.sh's ($KORDON_ONNXRUNTIME_VERSION)"

  install_apt_packages
  install_python_tools
  install_image_tools

  local started=$SECONDS ctx="$IMAGE_DIR/build-context"
  if [ -n "$bin" ]; then
    [ -x "$bin" ] || die "--binary $bin is not an executable file"
    bin="$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")"
    log "packing $bin (built elsewhere)"
  else
    install_rust_components
    build_console
    log "building kordon ($profile profile)"
    if [ "$profile" = release ]; then
      cargo build --release --locked --bin kordon
      bin="$CARGO_TARGET_DIR/release/kordon"
    else
      cargo build --locked --bin kordon
      bin="$CARGO_TARGET_DIR/debug/kordon"
    fi
  fi
  rm -rf "$ctx" && mkdir -p "$ctx/out"
  if [ "$profile" = dev ]; then
    objcopy --strip-debug "$bin" "$ctx/out/kordon"
  else
    cp "$bin" "$ctx/out/kordon"
  fi
  local ort
  ort="$(ls "$KORDON_VENV"/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so.* | head -n1)"
  [ -f "$ort" ] || die "no ONNX Runtime library in $KORDON_VENV (install_python_tools)"
  cp "$ort" "$ctx/out/libonnxruntime.so"

  ensure_base
  local tag="$REPOSITORY:$VERSION" revision
  revision="$(git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo unknown)"
  log "building the image $tag (buildah, chroot isolation)"
  bah build --quiet --isolation chroot --pull-never --layers \
    --build-arg "BASE_IMAGE=$BASE_IMAGE" \
    --build-context "build=$ctx" \
    --label "org.opencontainers.image.title=kordon" \
    --label "org.opencontainers.image.version=$VERSION" \
    --label "org.opencontainers.image.revision=$revision" \
    --label "io.kordon.build-profile=$profile" \
    --tag "localhost/$tag" \
    --file "$ROOT/Containerfile" "$ROOT" >/dev/null
  mkdir -p "$(dirname "$out")"
  rm -f "$out"
  bah push --quiet "localhost/$tag" "oci-archive:$out:$tag"
  # Older builds of the tag, the build's intermediate layers and its context are not kept.
  bah rmi --prune >/dev/null 2>&1 || true
  rm -rf "$ctx"
  local digest
  digest="$(bah inspect --type image --format '{{.FromImageDigest}}' "localhost/$tag")"
  log "image $tag ($profile) written to $out: $(du -h "$out" | cut -f1), $digest, in $((SECONDS - started)) s"
  echo "  load it:   podman load -i $out   (or: skopeo copy oci-archive:$out docker://<registry>/$tag)" >&2
}

unpack() {
  local archive="${1:?usage: scripts/image.sh unpack ARCHIVE DIR}" dir="${2:?usage: scripts/image.sh unpack ARCHIVE DIR}"
  [ -f "$archive" ] || die "no archive at $archive (scripts/image.sh build writes one)"
  install_image_tools
  local layout
  layout="$(mktemp -d)"
  tar -xf "$archive" -C "$layout"
  local ref
  ref="$(python3 -c 'import json,sys; m=json.load(open(sys.argv[1]))["manifests"]; print(m[0]["annotations"]["org.opencontainers.image.ref.name"])' "$layout/index.json")"
  rm -rf "$dir"
  umoci unpack --image "$layout:$ref" "$dir" >/dev/null
  rm -rf "$layout"
  log "unpacked $archive ($ref) into $dir/rootfs"
}

case "${1:-build}" in
  build) [ $# -gt 0 ] && shift; build "$@" ;;
  --*) build "$@" ;;
  unpack) shift; unpack "$@" ;;
  *) die "unknown command $1 (build, unpack)" ;;
esac
