#!/usr/bin/env bash
# Per-hit overhead of a probe printing three DWARF-described fields on a hot function:
# snaptap (ptrace backend) side by side with gdb's dprintf, and bpftrace and stap --runtime=bpf
# (in-kernel uprobes) when installed,
# same binary, same run. Usage: bench/per_hit.sh [HITS_SNAPTAP] [HITS_GDB]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-50000}
NG=${2:-5000}
cargo build --release -q -p snaptap
mkdir -p target/bench
gcc -g -O2 -o target/bench/hot bench/hot.c
HOT=$PWD/target/bench/hot
SNAPTAP=${CARGO_TARGET_DIR:-$PWD/target}/release/snaptap

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
# In-kernel tools, where this machine runs them: bpftrace and SystemTap's own BPF runtime.
# Both raise RLIMIT_MEMLOCK, which a container may refuse although the kernel (>= 5.11)
# no longer needs it; a tiny LD_PRELOAD shim makes that call succeed.
shim=target/bench/memlock-shim.so
printf '#define _GNU_SOURCE\n#include <sys/resource.h>\n#include <dlfcn.h>\nint setrlimit(__rlimit_resource_t r, const struct rlimit *l) { if (r == RLIMIT_MEMLOCK) return 0; int (*f)(int, const struct rlimit *) = dlsym(RTLD_NEXT, "setrlimit"); return f(r, l); }\n' >target/bench/memlock-shim.c
gcc -shared -fPIC -o "$shim" target/bench/memlock-shim.c -ldl
ratios=""
other() { # name, elapsed
  [ -n "$2" ] || return 0
  local us
  us=$(awk -v t="$2" -v b="$base_n" -v n="$N" 'BEGIN{printf "%.2f", (t-b)/n/1000}')
  printf "%-10s %10d %14s\n" "$1" "$N" "$us"
  ratios+=$(awk -v s="$snap_us" -v o="$us" -v name="$1" 'BEGIN{printf "ratio %s/snaptap: %.2fx\n", name, o/s}')$'\n'
}
if command -v bpftrace >/dev/null 2>&1; then
  bpft=$(LD_PRELOAD=$PWD/$shim bpftrace -q -e "uprobe:$HOT:hot { printf(\"%d %d %d\\n\", args->it->id, args->it->len, args->it->kind); }" -c "$HOT $N" 2>&1 >/dev/null | elapsed || true)
  other bpftrace "$bpft"
fi
if command -v stap >/dev/null 2>&1; then
  stapt=$(LD_PRELOAD=$PWD/$shim timeout 120 stap --runtime=bpf -e "probe process(\"$HOT\").function(\"hot\") { printf(\"%d %d %d\\n\", \$it->id, \$it->len, \$it->kind) }" -c "$HOT $N" 2>&1 >/dev/null | elapsed || true)
  other stap-bpf "$stapt"
fi
awk -v s="$snap_us" -v g="$gdb_us" 'BEGIN{printf "ratio gdb/snaptap: %.1fx (snaptap costs %.1f%% of gdb per hit)\n", g/s, 100*s/g}'
printf "%s" "$ratios"
