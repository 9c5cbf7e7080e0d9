#!/bin/sh
# iso.sh OUTDIR ['WORKLOAD ARGS']: the second boot path, through GRUB.
# Builds OUTDIR/mach.iso (grub-mkrescue, BIOS GRUB) holding the patched
# 64-bit kernel (OUTDIR/gnumach.dbg, loaded by GRUB's multiboot as is) and the
# workload as a Hurd-style boot module. Boot it with
# `mach/boot.sh OUTDIR --iso` (QEMU -cdrom). The workload arguments are baked
# into grub.cfg (default: rounds=3). Needs grub-pc-bin, grub-common, xorriso,
# mtools; run build.sh first.
set -eu
[ $# -ge 1 ] || { echo "usage: $0 OUTDIR ['rounds=N report=N']" >&2; exit 2; }
OUT=$(cd "$1" && pwd)
ARGS=${2:-rounds=3}
for f in gnumach.dbg workload; do
    [ -r "$OUT/$f" ] || { echo "iso.sh: $OUT/$f missing; run mach/build.sh $OUT" >&2; exit 1; }
done
command -v grub-mkrescue >/dev/null || { echo "iso.sh: grub-mkrescue missing (apt-get install grub-pc-bin grub-common xorriso mtools)" >&2; exit 1; }
ROOT=$OUT/iso-root
rm -rf "$ROOT"
mkdir -p "$ROOT/boot/grub"
# The loaded segments are those of gnumach.dbg; only the DWARF is left out,
# which GRUB would otherwise read from the emulated CD for nothing.
objcopy --strip-debug "$OUT/gnumach.dbg" "$ROOT/boot/gnumach"
cp "$OUT/workload" "$ROOT/boot/workload"
# GRUB talks on the serial line too (the VM has no display); timeout 0 boots
# at once. GRUB's own quoting keeps $(task-create) literal for Mach's boot
# script.
cat > "$ROOT/boot/grub/grub.cfg" <<CFG
serial --unit=0 --speed=115200
terminal_input serial
terminal_output serial
set timeout=0
menuentry "GNU Mach test machine" {
	multiboot /boot/gnumach console=com0
	module /boot/workload workload $ARGS '\$(task-create)' '\$(task-resume)'
}
CFG
grub-mkrescue -o "$OUT/mach.iso.tmp" "$ROOT" >"$OUT/iso.log" 2>&1 || { cat "$OUT/iso.log" >&2; exit 1; }
mv "$OUT/mach.iso.tmp" "$OUT/mach.iso"
echo "iso.sh: $OUT/mach.iso"
