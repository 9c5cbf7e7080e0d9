#!/bin/sh
# build.sh OUTDIR: prepare the GNU Mach test machine from Debian's packages.
#
#   OUTDIR/gnumach.orig    Debian's kernel, unmodified (x86_64 ELF with DWARF 5)
#   OUTDIR/gnumach.dbg     the same with the upstream syscall fix applied
#                          (2 bytes in syscall_entry_2); still has DWARF.
#                          This is the ELF to give snaptap (--kernel): it is
#                          byte for byte what runs, apart from the ELF wrapper.
#   OUTDIR/gnumach.patched alias of gnumach.dbg (same file, hard link or copy)
#   OUTDIR/gnumach.elf32   gnumach.dbg rewrapped as ELF32 for qemu -kernel
#   OUTDIR/workload        the 32-bit i386 bootstrap task (mach/workload/)
#
# Needs: gnumach-image-1.8-486-dbg, binutils, gcc-multilib. No network.
# Idempotent: every run rebuilds OUTDIR from scratch in well under a second.
set -eu

usage() { echo "usage: $0 OUTDIR" >&2; exit 2; }
[ $# -eq 1 ] || usage
OUT=$1
HERE=$(cd "$(dirname "$0")" && pwd)
SRC=${GNUMACH_GZ:-/boot/gnumach-1.8-486-dbg.gz}

[ -r "$SRC" ] || { echo "build.sh: $SRC not found (apt-get install gnumach-image-1.8-486-dbg)" >&2; exit 1; }
mkdir -p "$OUT"

# 1. The unmodified kernel.
gzip -dc "$SRC" > "$OUT/gnumach.orig.tmp"
mv "$OUT/gnumach.orig.tmp" "$OUT/gnumach.orig"

# 2. The syscall fix. Debian's snapshot (2:1.8+git20221224) still has a ud2
# guard in the x86_64 syscall entry (syscall_entry_2 at VA 0x41013925), so
# every user trap panics; upstream commit 4c903ebf removed it. We replace the
# ud2 (0f 0b) at VA 0x41013929 = file offset 0x14929 with a 2-byte nop (66 90),
# but only after checking the bytes are exactly the ones we expect.
OFF=$((0x14929))
have=$(od -An -tx1 -j "$OFF" -N 2 "$OUT/gnumach.orig" | tr -d ' \n')
if [ "$have" != "0f0b" ]; then
    echo "build.sh: $SRC is not the kernel this script knows:" >&2
    echo "  expected bytes 0f 0b (ud2) at file offset 0x14929 (VA 0x41013929, syscall_entry_2)," >&2
    echo "  found '$have'. Refusing to patch; see mach/README.md." >&2
    exit 1
fi
cp "$OUT/gnumach.orig" "$OUT/gnumach.dbg.tmp"
printf '\146\220' | dd of="$OUT/gnumach.dbg.tmp" bs=1 seek="$OFF" conv=notrunc status=none
now=$(od -An -tx1 -j "$OFF" -N 2 "$OUT/gnumach.dbg.tmp" | tr -d ' \n')
[ "$now" = "6690" ] || { echo "build.sh: patch did not apply (read back '$now')" >&2; exit 1; }
mv "$OUT/gnumach.dbg.tmp" "$OUT/gnumach.dbg"
rm -f "$OUT/gnumach.patched"
ln "$OUT/gnumach.dbg" "$OUT/gnumach.patched" 2>/dev/null || cp "$OUT/gnumach.dbg" "$OUT/gnumach.patched"

# 3. ELF32 wrapper for QEMU's multiboot loader (which refuses ELF64). All
# addresses of this kernel fit in 32 bits, so the program is unchanged.
objcopy -I elf64-x86-64 -O elf32-i386 "$OUT/gnumach.dbg" "$OUT/gnumach.elf32.tmp"
mv "$OUT/gnumach.elf32.tmp" "$OUT/gnumach.elf32"

# 4. The workload: a freestanding 32-bit task (user tasks are i386 on this kernel).
CC=${CC:-gcc}
WL=$HERE/workload
$CC -m32 -march=i686 -ffreestanding -nostdlib -static -fno-pic -no-pie \
    -fno-stack-protector -fno-asynchronous-unwind-tables -fno-builtin \
    -O2 -fno-tree-loop-distribute-patterns -g -Wall -Wextra -Werror \
    -Wl,-Ttext-segment=0x08048000 -Wl,--build-id=none -Wl,-z,noseparate-code -Wl,-e,_start \
    -o "$OUT/workload.tmp" "$WL/start.S" "$WL/workload.c"
mv "$OUT/workload.tmp" "$OUT/workload"

echo "build.sh: $OUT/gnumach.dbg (patched, DWARF), $OUT/gnumach.elf32, $OUT/workload"
