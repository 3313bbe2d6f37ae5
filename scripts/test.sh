#!/usr/bin/env bash
# The whole test suite: formatting, clippy, the one-wgpu/one-naga rule, the wasm32 check of
# the browser app, every test (GPU tests on whatever adapter is present, Mesa lavapipe in CI)
# and the fixture check from the command line.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/ensure-deps.sh
# Keep the (large) build outside the clone so later runs on this machine reuse it.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/medseg/target}"
export CARGO_TERM_COLOR=never
# GPU tests fail instead of skipping when no adapter is found.
export MEDSEG_REQUIRE_GPU=1
# Tests compile every kernel from scratch: no kernel cache kept between runs.
export MEDSEG_KERNEL_CACHE=off
# Mesa's loaders want a runtime dir; give them a private one.
if [ -z "${XDG_RUNTIME_DIR:-}" ] || [ ! -d "${XDG_RUNTIME_DIR}" ]; then
    export XDG_RUNTIME_DIR="$(mktemp -d)"
    chmod 700 "$XDG_RUNTIME_DIR"
fi

step() { echo; echo "=== $* ==="; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "one wgpu and one naga in the dependency graph"
dups=$(cargo tree --workspace -d -e normal --target all 2>/dev/null | grep -E '^(wgpu|naga|wgpu-core|wgpu-hal|wgpu-types) v' || true)
if [ -n "$dups" ]; then
    echo "error: more than one version of wgpu/naga in the graph:" >&2
    echo "$dups" >&2
    exit 1
fi
cargo tree --workspace -e normal -i wgpu@30 >/dev/null

step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

# The browser app (web/, with the app, model and data crates under it) compiles for the browser;
# building and running it there (scripts/build-web.sh, the ignored test in tests/app/browser.rs) takes a
# wasm build of burn, longer than CI has.
step "cargo check the browser app (web/ and the crates under it) for wasm32-unknown-unknown"
RUSTFLAGS="${RUSTFLAGS:-} -D warnings" cargo check -p medseg-web --target wasm32-unknown-unknown

step "cargo test"
cargo test --workspace -- --test-threads 2

# On lavapipe the networks take burn's convolutions (ConvImpl::Auto; ours cost more on a CPU)
# and burn's matmul for the linear layers; here they take our GEMM kernel for both, the route
# the browser build takes, so the whole networks (forward, gradients, AdamW step) are also held
# to the official code on that route.
step "medseg check-fixtures ../shared/fixtures (convolutions and linear layers on our GEMM kernel)"
MEDSEG_CONV=ours MEDSEG_LINEAR=ours cargo run -q -p medseg -- check-fixtures ../shared/fixtures

step "medseg info and medseg eval on ../shared/data"
cargo run -q -p medseg -- info ../shared/data/ct/images/ts_example_ct_a.nii.gz
cargo run -q -p medseg -- info --json ../shared/data/mri_abdomen/images/ts_example_mr.nii.gz >"$CARGO_TARGET_DIR/info-smoke.json"
grep -q '"orientation": "LPS"' "$CARGO_TARGET_DIR/info-smoke.json"
cargo run -q -p medseg -- info ../shared/data/polyp
# The reference masks scored against themselves: every DSC is 1, every distance 0.
cargo run -q -p medseg -- eval --pred ../shared/data/ct/labels --gt ../shared/data/ct/labels \
    --json "$CARGO_TARGET_DIR/eval-smoke.json" >/dev/null
grep -q '"hd95_mm": 0.0' "$CARGO_TARGET_DIR/eval-smoke.json"
if grep -q '"dice": 0' "$CARGO_TARGET_DIR/eval-smoke.json"; then
    echo "error: a label scored against itself has DSC below 1" >&2
    exit 1
fi

step "fuzz smoke: NIfTI, DICOM and PNG readers (20 s each)"
bash scripts/fuzz-smoke.sh 20

step "medseg gpu-info and a small medseg bench scan (the commands work; timings on lavapipe mean nothing)"
cargo run -q -p medseg -- gpu-info
cargo run -q -p medseg -- bench scan --batch 1 --iters 2 --stages 4 --json "$CARGO_TARGET_DIR/bench-smoke.json"
grep -q '"fwd_ms"' "$CARGO_TARGET_DIR/bench-smoke.json"
