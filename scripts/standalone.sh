#!/usr/bin/env bash
# Kordon's main job on embedded defaults (the README's first quick-start command): installs what
# is missing, builds, and runs `kordon standalone` (simulated cameras, local files, SQLite) with
# data in ./kordon-data. Extra arguments go to `kordon standalone`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

install_apt_packages
install_rust_components
# ONNX Runtime for the detector (the onnxruntime wheel's library, in the project venv).
install_python_tools
# The web console, embedded in the binary built next.
build_console
log "building kordon (release)"
cargo build --release --locked --bin kordon
# `kordon` on the PATH, so the README's client commands work as written from another shell.
bin="$CARGO_TARGET_DIR/release/kordon"
for dir in /usr/local/bin "$HOME/.local/bin"; do
  if mkdir -p "$dir" 2>/dev/null && ln -sfn "$bin" "$dir/kordon" 2>/dev/null; then
    case ":$PATH:" in
      *":$dir:"*) log "kordon is on the PATH: $dir/kordon -> $bin" ;;
      *) log "linked $dir/kordon -> $bin; add $dir to PATH to run \`kordon\` from another shell" ;;
    esac
    break
  fi
done
log "starting kordon standalone (Ctrl-C to stop)"
exec "$bin" standalone "$@"
