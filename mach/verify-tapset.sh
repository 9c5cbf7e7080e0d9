#!/bin/sh
# verify-tapset.sh OUTDIR [PORT]
#
# Checks, with gdb on QEMU's gdbstub, that the kernel functions and the
# expressions mach/tapset/mach.stp uses exist in the running kernel and read
# the right values: boots the machine paused (-S) with the workload in
# `rounds=2 idle=1` mode, runs verify/tapset_gdb.py (one breakpoint per
# tapset probe point, evaluating the tapset's expressions there), and
# compares what it read with the workload's truth lines (verify/compare.py).
# Logs: OUTDIR/verify-gdb.txt, OUTDIR/verify-serial.txt. Exit 0 if all match.
set -eu
[ $# -ge 1 ] || { echo "usage: $0 OUTDIR [GDB_PORT]" >&2; exit 2; }
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=$(cd "$1" && pwd)
PORT=${2:-1234}
CMD=$("$HERE/qemu-cmd.sh" "$OUT" --gdb "$PORT" --args 'rounds=2 idle=1' -S)
eval "exec $CMD" < /dev/null > "$OUT/verify-serial.raw" 2>&1 &
QPID=$!
trap 'kill $QPID 2>/dev/null || true' EXIT INT TERM
sleep 0.5
timeout 300 gdb -batch -nx -ex "source $HERE/verify/tapset_gdb.py" \
    -ex "python PORT = 'localhost:$PORT'" -ex 'python main()' "$OUT/gnumach.dbg" \
    > "$OUT/verify-gdb.txt" 2>&1 || { echo "verify-tapset.sh: gdb failed, see $OUT/verify-gdb.txt" >&2; exit 1; }
kill $QPID 2>/dev/null || true
wait $QPID 2>/dev/null || true
trap - EXIT INT TERM
tr -d '\r' < "$OUT/verify-serial.raw" > "$OUT/verify-serial.txt"
python3 "$HERE/verify/compare.py" "$OUT/verify-gdb.txt" "$OUT/verify-serial.txt"
