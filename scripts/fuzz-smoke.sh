#!/usr/bin/env bash
# Short runs of the cargo-fuzz targets of medseg-data (NIfTI, DICOM, PNG), seeded with the
# malformed-file corpus and real samples, under AddressSanitizer. A panic, a memory error, a
# single allocation over 512 MiB or RSS over 3 GiB fails the run (the failing input is left in
# model/data/fuzz/artifacts/).
# Usage: scripts/fuzz-smoke.sh [seconds per target, default 30]
#        FUZZ_RUNS=1000000 scripts/fuzz-smoke.sh   (a number of executions per target instead)
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-30}"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
export CARGO_TARGET_DIR="${MEDSEG_FUZZ_TARGET_DIR:-$HOME/.cache/medseg/fuzz-target}"
# cargo-fuzz passes -Z options (the sanitizer); the stable toolchain accepts them when told to.
export RUSTC_BOOTSTRAP=1
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
seed() { mkdir -p "$work/$1"; shift_target="$1"; shift; for f in "$@"; do [ -f "$f" ] && cp "$f" "$work/$shift_target/"; done; return 0; }
seed nifti tests/data/malformed/*.nii tests/data/malformed/*.nii.gz ../shared/data/ct/labels/*.nii.gz
seed dicom tests/data/malformed/*.dcm
seed png tests/data/malformed/*.png ../shared/data/polyp/masks/cvc_1.png ../shared/data/microscopy/dsb2018/labels/dsb_00071198d059ba7f.png
cd model/data/fuzz
cargo fuzz build -O
for t in nifti dicom png; do
    if [ -n "${FUZZ_RUNS:-}" ]; then
        limit="-runs=$FUZZ_RUNS"
        echo "=== fuzz $t for $FUZZ_RUNS executions ==="
    else
        limit="-max_total_time=$secs"
        echo "=== fuzz $t for ${secs}s ==="
    fi
    log="$work/$t.log"
    if ! cargo fuzz run -O "$t" "$work/$t" -- \
        "$limit" -rss_limit_mb=3072 -malloc_limit_mb=512 -max_len=262144 >"$log" 2>&1; then
        grep -v -E "NEW|REDUCE|pulse" "$log" | tail -60
        echo "error: fuzz target $t failed" >&2
        exit 1
    fi
    grep -E "^Done [0-9]+ runs" "$log"
done
