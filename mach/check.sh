#!/bin/sh
# check.sh OUTDIR [--iso] [--args 'rounds=N report=N']
#
# Boots the test machine for a few seconds, captures the serial console in
# OUTDIR/check-serial.txt (carriage returns removed; raw in .raw), and verifies that the kernel booted and the
# workload printed all its truth lines (every kind, no error, no mismatch)
# and reached its benchmark loop. Prints the time from QEMU start to the
# kernel banner, to the workload's first line and to its last round.
# Exit status 0 only if everything was seen.
set -eu
[ $# -ge 1 ] || { echo "usage: $0 OUTDIR [--iso] [--args 'rounds=N report=N']" >&2; exit 2; }
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=$(cd "$1" && pwd); shift
ISO=""; ARGS="rounds=3 report=100000"
while [ $# -gt 0 ]; do
    case "$1" in
        --iso) ISO=--iso; shift ;;
        --args) ARGS=$2; shift 2 ;;
        *) echo "check.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
LIMIT=${CHECK_TIMEOUT:-20}   # seconds to wait for "bench count="
RAW=$OUT/check-serial.raw
LOG=$OUT/check-serial.txt
: > "$RAW"; : > "$LOG"

CMD=$("$HERE/qemu-cmd.sh" "$OUT" $ISO --args "$ARGS")
now_ms() { date +%s%3N; }
T0=$(now_ms)
eval "exec $CMD" < /dev/null > "$RAW" 2>&1 &
QPID=$!
trap 'kill $QPID 2>/dev/null || true' EXIT INT TERM

t_banner=""; t_start=""; t_done=""
while :; do
    t=$(( $(now_ms) - T0 ))
    # Mach's console writes "\r" before and "\r\n" after each line.
    tr -d '\r' < "$RAW" > "$LOG"
    [ -z "$t_banner" ] && grep -q '^GNU Mach' "$LOG" && t_banner=$t
    [ -z "$t_start" ] && grep -q '^truth start' "$LOG" && t_start=$t
    [ -z "$t_done" ] && grep -q '^truth done' "$LOG" && t_done=$t
    grep -q '^bench count=' "$LOG" && break
    grep -qE 'panic|Kernel Debugger|truth error' "$LOG" && break
    kill -0 $QPID 2>/dev/null || break
    [ $t -ge $((LIMIT * 1000)) ] && break
    sleep 0.01
done
kill $QPID 2>/dev/null || true
wait $QPID 2>/dev/null || true
trap - EXIT INT TERM
tr -d '\r' < "$RAW" > "$LOG"

fail=0
need() {
    if grep -qE "$1" "$LOG"; then echo "ok    $2"; else echo "FAIL  $2 (no line matching /$1/)"; fail=1; fi
}
refuse() {
    if grep -qE "$1" "$LOG"; then echo "FAIL  $2:"; grep -E "$1" "$LOG" | head -5; fail=1; else echo "ok    $2"; fi
}
need '^GNU Mach 1\.8' 'kernel banner'
need '^truth start task=0x[0-9a-f]+ reply_port=0x[0-9a-f]+ thread=0x[0-9a-f]+ rounds=[0-9]+' 'workload started'
need '^truth port_allocate right=receive name=0x[0-9a-f]+$' 'port_allocate (receive)'
need '^truth msg id=[0-9]+ send_size=32 .* ok$' 'msg send_size=32'
need '^truth msg id=[0-9]+ send_size=1024 .* ok$' 'msg send_size=1024'
need '^truth vm_allocate size=[0-9]+ addr=0x[0-9a-f]+$' 'vm_allocate'
need '^truth vm_deallocate size=[0-9]+ addr=0x[0-9a-f]+$' 'vm_deallocate'
need '^truth stack_allocate size=[0-9]+ addr=0x[0-9a-f]+$' 'thread stack vm_allocate'
need '^truth thread_create thread=0x[0-9a-f]+$' 'thread_create'
need '^truth thread_set_state thread=' 'thread_set_state'
need '^truth thread_resume thread=' 'thread_resume'
need '^truth thread_msg id=[0-9]+ .* ok$' 'message from the created thread'
need '^truth thread_port_destroy name=0x[0-9a-f]+$' 'thread port name destroyed'
need '^truth thread_switch$' 'thread_switch'
need '^truth port_allocate right=dead_name name=' 'port_allocate (dead name)'
need '^truth port_deallocate name=' 'port_deallocate'
need '^truth port_destroy name=' 'port_destroy'
need '^truth stack_deallocate size=[0-9]+ addr=0x[0-9a-f]+$' 'thread stack vm_deallocate (from round 1 on)'
need '^truth done rounds=' 'all rounds done'
case "$ARGS" in *report=0*) ;; *) need '^bench count=[0-9]+$' 'benchmark loop running' ;; esac
refuse 'MISMATCH|truth error|panic|Kernel Debugger' 'no errors, mismatches or panics'

echo "serial log: $LOG ($(grep -c '^truth ' "$LOG") truth lines)"
echo "time from qemu start: banner ${t_banner:-never} ms, workload start ${t_start:-never} ms, rounds done ${t_done:-never} ms"
exit $fail
