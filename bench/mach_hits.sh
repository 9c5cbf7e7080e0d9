#!/usr/bin/env bash
# Probe hits per second on GNU Mach's mach_msg_trap under the workload's IPC loop,
# through QEMU's gdbstub: snaptap (--gdb) side by side with gdb's dprintf of the same
# three arguments, on the same VM, in the same run; plus the workload's own rate.
# Usage: bench/mach_hits.sh [HITS]
set -euo pipefail
cd "$(dirname "$0")/.."
HITS=${1:-1000}
OUT=$PWD/target/mach-bench
cargo build --release -q -p snaptap
SNAPTAP=${CARGO_TARGET_DIR:-$PWD/target}/release/snaptap
mach/build.sh "$OUT" >/dev/null
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
CMD=$(mach/qemu-cmd.sh "$OUT" --gdb "$PORT" --args 'rounds=0 report=100000')
eval "exec $CMD" < /dev/null > "$OUT/bench-serial.txt" 2>&1 &
QPID=$!
trap 'kill $QPID 2>/dev/null || true' EXIT
# The workload's own speed: iterations per second from its "bench count=" lines.
rate() {
  local a b ta tb
  sleep "$1"
  a=$(grep -c 'bench count=' "$OUT/bench-serial.txt" || true); ta=$(date +%s.%N)
  sleep 3
  b=$(grep -c 'bench count=' "$OUT/bench-serial.txt" || true); tb=$(date +%s.%N)
  awk -v a="$a" -v b="$b" -v ta="$ta" -v tb="$tb" 'BEGIN{printf "%.0f", (b-a)*100000/(tb-ta)}'
}
untraced=$(rate 2)

t0=$(date +%s.%N)
"$SNAPTAP" --kernel "$OUT/gnumach.dbg" --gdb "127.0.0.1:$PORT" -o /dev/null -e "global n
probe kernel.function(\"mach_msg_trap\") { n++; printf(\"%d %d %d\\n\", \$option, \$send_size, \$rcv_size); if (n == $HITS) exit() }"
t1=$(date +%s.%N)
gdb -nx -batch -ex "target remote 127.0.0.1:$PORT" \
    -ex 'dprintf mach_msg_trap,"%d %d %d\n",option,send_size,rcv_size' \
    -ex 'break mach_msg_trap' -ex "ignore 2 $((HITS - 1))" -ex continue \
    -ex delete -ex detach "$OUT/gnumach.dbg" > /dev/null 2>&1
t2=$(date +%s.%N)
after=$(rate 0)

snap=$(awk -v n="$HITS" -v a="$t0" -v b="$t1" 'BEGIN{printf "%.0f", n/(b-a)}')
gdbr=$(awk -v n="$HITS" -v a="$t1" -v b="$t2" 'BEGIN{printf "%.0f", n/(b-a)}')
printf "%-26s %12s\n" "what" "per second"
printf "%-26s %12s\n" "workload untraced (iter)" "$untraced"
printf "%-26s %12s\n" "snaptap --gdb (hits)" "$snap"
printf "%-26s %12s\n" "gdb dprintf (hits)" "$gdbr"
printf "%-26s %12s\n" "workload after detach" "$after"
awk -v s="$snap" -v g="$gdbr" 'BEGIN{printf "ratio snaptap/gdb: %.2fx\n", s/g}'
