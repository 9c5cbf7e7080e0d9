#!/bin/sh
# qemu-cmd.sh OUTDIR [--gdb PORT] [--args 'WORKLOAD ARGS'] [--iso] [EXTRA QEMU ARGS...]
#
# Prints, on one line and shell-quoted, the QEMU command that boots the GNU
# Mach test machine built by build.sh: the patched kernel (ELF32 wrapper)
# through QEMU's multiboot loader with the workload as the boot module, TCG
# only, serial console on stdio. Meant for `sh -c` or
# `snaptap --vm "$(mach/qemu-cmd.sh OUT)" --kernel OUT/gnumach.dbg ...`.
#   --gdb PORT   add QEMU's gdbstub on tcp::PORT
#   --args S     workload arguments, e.g. 'rounds=10 report=0' (default: rounds=3)
#   --iso        boot OUTDIR/mach.iso (from iso.sh) through GRUB instead
set -eu
[ $# -ge 1 ] || { echo "usage: $0 OUTDIR [--gdb PORT] [--args 'rounds=N report=N'] [--iso] [qemu args...]" >&2; exit 2; }
OUT=$(cd "$1" && pwd); shift
GDB=""; ARGS="rounds=3"; ISO=""
while [ $# -gt 0 ]; do
    case "$1" in
        --gdb) GDB=$2; shift 2 ;;
        --args) ARGS=$2; shift 2 ;;
        --iso) ISO=1; shift ;;
        *) break ;;
    esac
done
case "$OUT" in *,*|*\ *|*\'*) echo "qemu-cmd.sh: OUTDIR must not contain commas, spaces or quotes" >&2; exit 2 ;; esac
for f in gnumach.elf32 workload; do
    [ -r "$OUT/$f" ] || { echo "qemu-cmd.sh: $OUT/$f missing; run mach/build.sh $OUT" >&2; exit 1; }
done

q() { printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")"; }

printf 'qemu-system-x86_64 -m 512 -accel tcg -display none -serial stdio -monitor none -no-reboot'
if [ -n "$ISO" ]; then
    [ -r "$OUT/mach.iso" ] || { echo "qemu-cmd.sh: $OUT/mach.iso missing; run mach/iso.sh $OUT" >&2; exit 1; }
    printf ' -boot d -cdrom %s' "$(q "$OUT/mach.iso")"
else
    # QEMU's multiboot loader takes the module file name as the first word of
    # each -initrd entry and hands the whole entry to the kernel as the module
    # command line; GNU Mach's boot script then runs $(task-create) and
    # $(task-resume) and passes the other words as argv.
    printf ' -kernel %s -append %s -initrd %s' "$(q "$OUT/gnumach.elf32")" "$(q 'console=com0')" \
        "$(q "$OUT/workload $ARGS \$(task-create) \$(task-resume)")"
fi
[ -n "$GDB" ] && printf ' -gdb %s' "$(q "tcp::$GDB")"
for a in "$@"; do printf ' %s' "$(q "$a")"; done
printf '\n'
