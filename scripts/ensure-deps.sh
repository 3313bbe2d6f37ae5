#!/usr/bin/env bash
# Installs what medseg's build and tests need on a fresh Debian machine, when missing:
# Mesa's software Vulkan (lavapipe) so the GPU code has an adapter without a GPU, Xvfb and the
# X libraries for the app's real-window test, Chromium for the browser check of the kernels, the
# wasm32 target for the browser build's check, and cargo-fuzz for the fuzzing smoke run.
# Safe to run repeatedly.
set -euo pipefail

need_apt=()
if ! ls /usr/share/vulkan/icd.d/lvp_icd*.json >/dev/null 2>&1 && ! ls /usr/share/vulkan/icd.d/*.json >/dev/null 2>&1; then
    need_apt+=(mesa-vulkan-drivers)
fi
if ! ldconfig -p 2>/dev/null | grep -q 'libvulkan\.so\.1'; then
    need_apt+=(libvulkan1)
fi
# The desktop app: a virtual X server for the real-window test, and the X client libraries
# winit loads at run time.
command -v xvfb-run >/dev/null 2>&1 || need_apt+=(xvfb xauth)
for lib in libxkbcommon-x11.so.0:libxkbcommon-x11-0 libXcursor.so.1:libxcursor1 \
           libXrandr.so.2:libxrandr2 libXi.so.6:libxi6 libX11-xcb.so.1:libx11-xcb1; do
    ldconfig -p 2>/dev/null | grep -q "${lib%%:*}" || need_apt+=("${lib##*:}")
done
# The browser check of the WGSL kernels (tests/app/browser.rs): Debian's Chromium.
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium fonts-dejavu-core)
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "installing ${need_apt[*]} (Vulkan loader, Mesa lavapipe, Xvfb, X client libraries, Chromium)"
    SUDO=""
    if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
fi

if command -v rustup >/dev/null 2>&1; then
    if ! rustup target list --installed | grep -q '^wasm32-unknown-unknown$'; then
        rustup target add wasm32-unknown-unknown || {
            echo "error: could not add the wasm32-unknown-unknown target (rustup target add wasm32-unknown-unknown)" >&2
            exit 1
        }
    fi
fi

if ! command -v cargo-fuzz >/dev/null 2>&1; then
    echo "installing cargo-fuzz"
    cargo install cargo-fuzz --locked --quiet
fi
