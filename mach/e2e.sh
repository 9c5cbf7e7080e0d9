#!/bin/sh
# e2e.sh OUTDIR [PORT]: snaptap end to end on the Mach machine: runs
# tapset/examples/e2e.stp (with tapset/mach.stp prepended) with snaptap's
# kernel target against the workload in `rounds=2 idle=1` mode, started
# paused (-S) so every probe is in place before the workload runs, and
# checks the output against the workload's truth lines (verify/e2e_compare.py).
# SNAPTAP selects the binary (default: snaptap on PATH). The option spelling
# follows the planned driver options --kernel/--gdb/--vm.
set -eu
[ $# -ge 1 ] || { echo "usage: $0 OUTDIR [GDB_PORT]" >&2; exit 2; }
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=$(cd "$1" && pwd)
PORT=${2:-1234}
SNAPTAP=${SNAPTAP:-snaptap}
cat "$HERE/tapset/mach.stp" "$HERE/tapset/examples/e2e.stp" > "$OUT/e2e.stp"
VM=$("$HERE/qemu-cmd.sh" "$OUT" --gdb "$PORT" --args 'rounds=2 idle=1' -S)
start=$(date +%s%3N)
timeout 300 "$SNAPTAP" --kernel "$OUT/gnumach.dbg" --gdb "localhost:$PORT" --vm "$VM" \
    -o "$OUT/e2e-out.txt" "$OUT/e2e.stp" 2> "$OUT/e2e-err.txt" || {
    echo "e2e.sh: snaptap failed (rc=$?), see $OUT/e2e-err.txt:" >&2
    tail -20 "$OUT/e2e-err.txt" >&2
    exit 1
}
echo "snaptap ran for $(( $(date +%s%3N) - start )) ms"
python3 "$HERE/verify/e2e_compare.py" "$OUT/e2e-out.txt"
