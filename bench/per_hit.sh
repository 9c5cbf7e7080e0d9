#!/usr/bin/env bash
# Per-hit overhead of a probe printing three DWARF-described fields on a hot function:
# snaptap (ptrace backend) side by side with gdb's dprintf (and bpftrace if installed),
# same binary, same run. Usage: bench/per_hit.sh [HITS_SNAPTAP] [HITS_GDB]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-50000}
NG=${2:-5000}
cargo build --release -q -p snaptap
mkdir -p target/bench
gcc -g -O2 -o target/bench/hot bench/hot.c
HOT=$PWD/target/bench/hot
SNAPTAP=$PWD/target/release/snaptap

elapsed() { grep -o 'elapsed_ns [0-9]*' | awk '{print $2}' | tail -1; }

base_n=$("$HOT" "$N" 2>&1 | elapsed)
base_ng=$("$HOT" "$NG" 2>&1 | elapsed)

snap=$("$SNAPTAP" -o /dev/null -e "probe process(\"$HOT\").function(\"hot\") { printf(\"%d %d %d\\n\", \$it->id, \$it->len, \$it->kind) }" -c "$HOT $N" 2>&1 | elapsed)
gdbt=$(gdb -nx -batch -ex "dprintf hot,\"%d %ld %d\\n\", it->id, it->len, it->kind" -ex run --args "$HOT" "$NG" 2>&1 >/dev/null | elapsed)

snap_us=$(awk -v t="$snap" -v b="$base_n" -v n="$N" 'BEGIN{printf "%.2f", (t-b)/n/1000}')
gdb_us=$(awk -v t="$gdbt" -v b="$base_ng" -v n="$NG" 'BEGIN{printf "%.2f", (t-b)/n/1000}')
printf "%-10s %10s %14s\n" tool hits "us/hit"
printf "%-10s %10d %14s\n" snaptap "$N" "$snap_us"
printf "%-10s %10d %14s\n" gdb "$NG" "$gdb_us"
if command -v bpftrace >/dev/null 2>&1; then
  bpft=$(bpftrace -q -e "uprobe:$HOT:hot { printf(\"%d %d %d\\n\", args.it->id, args.it->len, args.it->kind); }" -c "$HOT $N" 2>&1 >/dev/null | elapsed || true)
  [ -n "$bpft" ] && printf "%-10s %10d %14s\n" bpftrace "$N" "$(awk -v t="$bpft" -v b="$base_n" -v n="$N" 'BEGIN{printf "%.2f", (t-b)/n/1000}')"
fi
awk -v s="$snap_us" -v g="$gdb_us" 'BEGIN{printf "ratio gdb/snaptap: %.1fx (snaptap costs %.1f%% of gdb per hit)\n", g/s, 100*s/g}'
