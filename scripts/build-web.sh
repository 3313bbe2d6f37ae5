#!/usr/bin/env bash
# Builds the browser app (web/) into a static folder: index.html, medseg_web.js and
# medseg_web_bg.wasm. Serve it with `medseg serve-web DIR` and open it in a browser with WebGPU.
#   bash scripts/build-web.sh [OUT]     (default: $CARGO_TARGET_DIR/web)
# MEDSEG_WEB_PROFILE picks the cargo profile (default dev: the dependencies are optimised there
# too); a cold build of burn for wasm32 takes ~15 minutes on 2 cores, later ones reuse it.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/medseg/target}"
OUT="${1:-$CARGO_TARGET_DIR/web}"
PROFILE="${MEDSEG_WEB_PROFILE:-dev}"

if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
    rustup target add wasm32-unknown-unknown || {
        echo "error: the wasm32-unknown-unknown target is missing and could not be added" >&2
        exit 1
    }
fi

# wasm-bindgen's command line must be the exact version of the wasm-bindgen crate in Cargo.lock.
VERSION=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)
TOOLS="$(dirname "$CARGO_TARGET_DIR")/tools"
BINDGEN="$TOOLS/bin/wasm-bindgen"
if ! "$BINDGEN" --version 2>/dev/null | grep -q " $VERSION\$"; then
    echo "installing wasm-bindgen-cli $VERSION into $TOOLS (once, a few minutes)"
    cargo install wasm-bindgen-cli --version "$VERSION" --root "$TOOLS"
fi

cargo build -p medseg-web --lib --target wasm32-unknown-unknown --profile "$PROFILE"
case "$PROFILE" in dev) DIR=debug ;; *) DIR="$PROFILE" ;; esac
mkdir -p "$OUT"
"$BINDGEN" --target web --no-typescript --out-dir "$OUT" \
    "$CARGO_TARGET_DIR/wasm32-unknown-unknown/$DIR/medseg_web.wasm"
cp web/index.html "$OUT/index.html"
ls -l "$OUT"
echo "built $OUT; serve it with: cargo run --release -p medseg -- serve-web $OUT"
