#!/usr/bin/env bash
# The Mach demo: builds snaptap and the GNU Mach test machine, boots it under QEMU
# (TCG) with snaptap attached through the gdbstub, and runs mach/demo.stp: IPC per task
# every second, then a histogram of message sizes. The console of the machine (the
# workload's own "truth" lines) is passed through. Needs the packages .ci/run installs.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p snaptap
OUT=target/mach
mach/build.sh "$OUT" >/dev/null
exec target/release/snaptap --kernel "$OUT/gnumach.dbg" \
  --vm "$(mach/qemu-cmd.sh "$OUT" --args 'rounds=3 report=0')" mach/demo.stp
