#!/usr/bin/env bash
# Probe hits per second of snaptap's QEMU TCG plugin on GNU Mach (mach_msg_trap, and the
# hotter lock_done, ~2 calls per IPC round trip) with a three-field capture, next to gdb's
# dprintf of the same fields on the same VM in the same run; plus the workload's own
# iteration rate untraced (no plugin), armed-but-idle (plugin loaded, probes instrumented,
# disarmed), without probes (plugin loaded, empty plan set) and traced. The traced and
# no-probe phases alternate three times in one VM (the probes move in and out while it
# runs), so "traced/no-probes" is not skewed by the host's load drifting between boots.
# Needs QEMU 10 (scripts/install-qemu10.sh).
# Usage: bench/plugin_hits.sh [SECONDS_PER_PHASE] [GDB_HITS]
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-3}
GHITS=${2:-300}
TGT=${CARGO_TARGET_DIR:-$PWD/target}
OUT=$TGT/mach-plugin-bench
cargo build --release -q -p qemu-plugin
cargo build --release -q -p backend-plugin --examples
BIN=$TGT/release/examples/plugin_hits
export SNAPTAP_QEMU_PLUGIN=$TGT/release/libqemu_plugin.so
mach/build.sh "$OUT" >/dev/null
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ARGS='rounds=0 report=20000'
kv() { sed -n "s/\(^\|.*[[:space:]]\)$1=\([^[:space:]]*\).*/\2/p" <<<"$2"; }

untraced=$("$BIN" "$OUT/gnumach.dbg" "$(mach/qemu-cmd.sh "$OUT" --args "$ARGS")" mach_msg_trap "$SECS" --no-plugin)
echo "untraced:  $untraced"
results=()
for f in mach_msg_trap lock_done; do
  P=$(port)
  gdbcmd="gdb -nx -batch -ex 'target remote 127.0.0.1:$P' \
    -ex 'dprintf $f,\"%d %d %d\\n\",\$rsi,\$rdx,\$rcx' \
    -ex 'break $f' -ex 'ignore 2 $((GHITS - 1))' -ex continue -ex delete -ex detach '$OUT/gnumach.dbg'"
  r=$("$BIN" "$OUT/gnumach.dbg" "$(mach/qemu-cmd.sh "$OUT" --gdb "$P" --args "$ARGS")" "$f" "$SECS" --after "$gdbcmd")
  echo "$f: $r"
  results+=("$r")
done
u=$(kv idle_iter_per_s "$untraced")
printf '\n%-44s %14s\n' "what" "per second"
printf '%-44s %14s\n' "workload untraced (iterations)" "$u"
for r in "${results[@]}"; do
  f=$(kv func "$r")
  gdb_rate=$(awk -v n="$GHITS" -v s="$(kv after_s "$r")" 'BEGIN{printf "%.0f", n/s}')
  printf '%-44s %14s\n' "workload armed-but-idle ($f)" "$(kv idle_iter_per_s "$r")"
  printf '%-44s %14s\n' "workload without probes ($f)" "$(kv noprobe_iter_per_s "$r")"
  printf '%-44s %14s\n' "workload traced ($f)" "$(kv traced_iter_per_s "$r")"
  printf '%-44s %14s\n' "plugin hits ($f, 3 fields)" "$(kv hits_per_s "$r")"
  printf '%-44s %14s\n' "gdb dprintf hits ($f, 3 fields)" "$gdb_rate"
  awk -v p="$(kv hits_per_s "$r")" -v g="$gdb_rate" -v t="$(kv traced_iter_per_s "$r")" -v u="$u" -v d="$(kv ring_dropped "$r")" -v f="$f" -v q="$(kv traced_vs_noprobe "$r")" \
    'BEGIN{printf "%s: plugin/gdb %.0fx, traced/untraced %.0f%%, traced/no-probes (same VM, interleaved) %.0f%%, ring drops %s\n", f, p/g, 100*t/u, 100*q, d}'
done
