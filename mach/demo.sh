#!/usr/bin/env bash
# The Mach demo: builds snaptap and the GNU Mach test machine, boots it under QEMU
# (TCG) with snaptap attached (its capture plans run inside QEMU through the TCG
# plugin when QEMU is version 10, through the gdbstub otherwise), and runs mach/demo.stp: IPC per task
# every second, then a histogram of message sizes. The console of the machine (the
# workload's own "truth" lines) is passed through. Needs the packages .ci/run installs.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p snaptap -p qemu-plugin
OUT=target/mach
mach/build.sh "$OUT" >/dev/null
exec target/release/snaptap --kernel "$OUT/gnumach.dbg" \
  --vm "$(mach/qemu-cmd.sh "$OUT" --args 'rounds=3 report=0')" mach/demo.stp
