#!/bin/sh
# e2e.sh OUTDIR [PORT]: snaptap end to end on the Mach machine.
#
# Boots the VM with its gdbstub on PORT (default 1234) and the workload in
# `rounds=2 idle=1 wait=3000` mode: the workload sleeps 3 s after boot so
# the tracer can attach to the running kernel first (a VM paused with -S is
# still in real mode: the kernel's addresses are not mapped yet, and the gdb
# backend refuses sites whose bytes it cannot read). Then it runs
# tapset/examples/e2e.stp (with tapset/mach.stp prepended), which exits when
# the workload prints "truth done", and checks the output against the truth
# lines that arrive through mach.print (verify/e2e_compare.py).
#
# The tracer: TRACER=plancheck (default) is mach/verify/plancheck --run,
# snaptap's own planner + gdb backend + runtime in a minimal session (built
# with cargo if PLANCHECK is not given); TRACER=snaptap runs
# `$SNAPTAP --kernel OUTDIR/gnumach.dbg --gdb localhost:PORT -o OUT SCRIPT`.
set -eu
[ $# -ge 1 ] || { echo "usage: $0 OUTDIR [GDB_PORT]" >&2; exit 2; }
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=$(cd "$1" && pwd)
PORT=${2:-1234}
TRACER=${TRACER:-plancheck}
SCRIPT=$OUT/e2e.stp
RESULT=$OUT/e2e-out.txt
if [ "$TRACER" = snaptap ]; then
    # snaptap carries the Mach tapset inside (mach.stpm + mach.stp).
    cp "$HERE/tapset/examples/e2e.stp" "$SCRIPT"
else
    cat "$HERE/tapset/mach.stpm" "$HERE/tapset/mach.stp" "$HERE/tapset/examples/e2e.stp" > "$SCRIPT"
fi

if [ "$TRACER" = plancheck ] && [ -z "${PLANCHECK:-}" ]; then
    CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/work/tgt/mach} \
        cargo build --quiet --manifest-path "$HERE/verify/plancheck/Cargo.toml" >&2 || {
        echo "e2e.sh: building mach/verify/plancheck failed" >&2; exit 1; }
    PLANCHECK=${CARGO_TARGET_DIR:-/work/tgt/mach}/debug/mach-plancheck
fi

CMD=$("$HERE/qemu-cmd.sh" "$OUT" --gdb "$PORT" --args 'rounds=2 idle=1 wait=3000')
eval "exec $CMD" < /dev/null > "$OUT/e2e-serial.raw" 2>&1 &
QPID=$!
trap 'kill $QPID 2>/dev/null || true' EXIT INT TERM
sleep 0.7
start=$(date +%s%3N)
case "$TRACER" in
    plancheck)
        PLANCHECK_SECONDS=120 "$PLANCHECK" "$SCRIPT" "$OUT/gnumach.dbg" --run "localhost:$PORT" \
            > "$RESULT" 2> "$OUT/e2e-err.txt" ;;
    snaptap)
        timeout 180 "${SNAPTAP:-snaptap}" --kernel "$OUT/gnumach.dbg" --gdb "localhost:$PORT" \
            -o "$RESULT" "$SCRIPT" 2> "$OUT/e2e-err.txt" ;;
    *) echo "e2e.sh: TRACER must be plancheck or snaptap" >&2; exit 2 ;;
esac || { rc=$?; echo "e2e.sh: the tracer failed (rc=$rc), see $OUT/e2e-err.txt:" >&2; tail -20 "$OUT/e2e-err.txt" >&2; exit 1; }
echo "tracer ran for $(( $(date +%s%3N) - start )) ms (including the workload's 3 s wait)"
cat "$OUT/e2e-err.txt"
kill $QPID 2>/dev/null || true
wait $QPID 2>/dev/null || true
trap - EXIT INT TERM
python3 "$HERE/verify/e2e_compare.py" "$RESULT"
