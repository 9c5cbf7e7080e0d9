#!/usr/bin/env bash
# Runtime handler throughput: builds the runtime's `throughput` example in release mode
# and prints records/s for a counting handler (`c[tid()]++`) and a histogram handler
# (`h <<< $len`), each fed from a synthetic in-memory record source on one core.
# Target (issue 3): at least 5 M records/s per core.
#
# Usage: bench/runtime_throughput.sh [RECORDS]   (default 20000000)
# CARGO_TARGET_DIR is honoured; it defaults to target/bench inside the repository.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
n="${1:-20000000}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target/bench}"
cd "$root"
cargo build --quiet --release -p runtime --example throughput
# Pin to one CPU when taskset exists, so the figure is per core.
pin=()
if command -v taskset >/dev/null 2>&1; then
    pin=(taskset -c 0)
fi
"${pin[@]}" "$CARGO_TARGET_DIR/release/examples/throughput" "$n"
