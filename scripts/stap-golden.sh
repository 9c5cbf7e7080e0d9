#!/bin/sh
# Regenerates the golden files of crates/snaptap/tests/stap-golden/ with a real SystemTap
# (by hand: CI has no stap; the test crates/snaptap/tests/it/golden.rs compares snaptap's
# output with the checked-in files byte for byte).
#
# Usage: scripts/stap-golden.sh [NAME...]      (default: every NAME.stp of the corpus)
#
# Each script's first line says how its golden is made:
#   # golden: run      stap --runtime=bpf NAME.stp -c golden  -> NAME.out (stdout), NAME.err
#   # golden: p1       stap -p1 NAME.stp                      -> NAME.out, NAME.err
#   # golden: p2       stap -p2 NAME.stp -c golden            -> NAME.err (semantic errors)
#   # golden: p2out    stap -p2 NAME.stp -c golden            -> NAME.out (the listing)
#   # golden: list -l  stap -l POINT (line 2: `# point: POINT`)  -> NAME.out (-L alike)
#   # golden: derived  not regenerated: the golden is written by hand from what stap's
#                      kernel runtime prints (the script's comments say from where); the
#                      BPF runtime lacks the feature.  For these the script writes NAME.p2,
#                      stap's own elaboration (`stap -p2 --vp 02`), when it helps to check.
# (stapbpf sometimes stays after its target has exited: the timeout ends it, its output is kept.)
# "golden" is the C fixture crates/snaptap/tests/fixtures/golden.c, built with gcc -g -O0.
#
# Container workarounds (stap was made for a host with kernel headers and root):
#  * stap wants /lib/modules/$(uname -r)/build even for the BPF runtime; a fake one with the
#    running kernel's .config, an empty Makefile/Module.symvers and utsrelease.h is enough.
#  * stapbpf raises RLIMIT_MEMLOCK, which a container forbids: scripts/rlimit-shim.c, loaded
#    with LD_PRELOAD, makes that call succeed (the kernel accounts BPF memory by cgroup).
#  * uprobes are attached through tracefs, which must be mounted.
# Lines that only this container or Debian's packaging add to stderr are dropped:
# "WARNING: Kernel function symbol table missing ..." and "Tip: /usr/share/doc/...".
set -eu

here=$(cd "$(dirname "$0")/.." && pwd)
corpus=$here/crates/snaptap/tests/stap-golden
work=${TMPDIR:-/tmp}/stap-golden.$$
mkdir -p "$work"
trap 'rm -rf "$work"' EXIT

command -v stap >/dev/null || { echo "stap is not installed" >&2; exit 1; }

build=/lib/modules/$(uname -r)/build
if [ ! -e "$build/.config" ]; then
    echo "making a fake kernel build directory in $build" >&2
    mkdir -p "$build/include/generated" "$build/include/config"
    if [ -r /proc/config.gz ]; then zcat /proc/config.gz >"$build/.config"
    elif [ -r "/boot/config-$(uname -r)" ]; then cp "/boot/config-$(uname -r)" "$build/.config"
    else echo "CONFIG_BPF=y" >"$build/.config"; echo "CONFIG_UPROBES=y" >>"$build/.config"; fi
    : >"$build/Makefile"
    : >"$build/Module.symvers"
    echo "#define UTS_RELEASE \"$(uname -r)\"" >"$build/include/generated/utsrelease.h"
    uname -r >"$build/include/config/kernel.release"
fi
if [ ! -e /sys/kernel/debug/tracing/uprobe_events ] && [ ! -e /sys/kernel/tracing/uprobe_events ]; then
    mount -t tracefs none /sys/kernel/debug/tracing 2>/dev/null ||
        mount -t tracefs none /sys/kernel/tracing
fi

gcc -shared -fPIC -o "$work/rl.so" "$here/scripts/rlimit-shim.c" -ldl
gcc -g -O0 -o "$work/golden" "$here/crates/snaptap/tests/fixtures/golden.c"

# Drops the container's and Debian's lines; spells the fixture's paths as in the tests.
clean() {
    grep -v -e '^WARNING: Kernel function symbol table missing' \
        -e '^Tip: /usr/share/doc/systemtap' |
        sed -e "s|$work/||g" -e "s|$here/crates/snaptap/tests/||g" || true
}

# Keeps FILE only when it is not empty.
keep() {
    if [ -s "$1" ]; then :; else rm -f "$1"; fi
}

cd "$corpus"
if [ $# -eq 0 ]; then set -- $(ls *.stp | sed 's/\.stp$//'); fi
for name in "$@"; do
    mode=$(sed -n '1s/^# golden: *\([a-z0-9]*\).*/\1/p' "$name.stp")
    case $mode in
    run)
        LD_PRELOAD=$work/rl.so timeout 60 stap --runtime=bpf "$name.stp" -c "$work/golden" \
            >"$name.out" 2>"$work/err" || true
        clean <"$work/err" >"$name.err"
        ;;
    p1)
        stap -p1 "$name.stp" >"$name.out" 2>"$work/err" || true
        clean <"$work/err" >"$name.err"
        ;;
    p2)
        stap -p2 "$name.stp" -c "$work/golden" >/dev/null 2>"$work/err" || true
        clean <"$work/err" >"$name.err"
        rm -f "$name.out"
        ;;
    p2out)
        # The fixture's paths are spelled `golden` and `fixtures/golden.c` in the golden.
        stap -p2 "$name.stp" -c "$work/golden" 2>"$work/err" |
            sed -e "s|$work/||g" -e "s|$here/crates/snaptap/tests/||g" >"$name.out" || true
        clean <"$work/err" >"$name.err"
        ;;
    list)
        # Line 2 is `# point: PROBE-POINT` with the fixture spelled `golden`.
        flag=$(sed -n '1s/^# golden: *list *\(-[lL]\).*/\1/p' "$name.stp")
        point=$(sed -n '2s/^# point: *//p' "$name.stp" | sed "s|\"golden\"|\"$work/golden\"|")
        stap "$flag" "$point" 2>"$work/err" |
            sed -e "s|$work/||g" -e "s|$here/crates/snaptap/tests/||g" >"$name.out" || true
        clean <"$work/err" >"$name.err"
        ;;
    derived)
        stap -p2 --vp 02 "$name.stp" -c "$work/golden" 2>/dev/null |
            sed -n '/^# probes/,$p' | sed -e "s|$work/||g" -e "s|$here/||g" >"$name.p2" || true
        keep "$name.p2"
        continue
        ;;
    *)
        echo "$name.stp: no '# golden:' line" >&2
        exit 1
        ;;
    esac
    keep "$name.out"
    keep "$name.err"
    echo "$name: $mode"
done
