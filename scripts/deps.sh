#!/usr/bin/env bash
# Installs what the tests and demos need on a fresh Debian 12 machine (as root):
# gcc/gdb for fixtures and comparisons, gdbserver for the gdb backend's process tests,
# QEMU + Debian's GNU Mach + gcc-multilib (+ GRUB tools for the ISO path) for the real
# kernel, libc6-dbg / python3.11-dbg / systemtap-sdt-dev for real packages' debug info
# and USDT, and QEMU 10 from bookworm-backports for the TCG plugin. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
need=()
for p in gcc libc6-dev make binutils gdb gdbserver procps python3 \
         qemu-system-x86 grub-pc-bin grub-common xorriso mtools gcc-multilib \
         gnumach-image-1.8-486-dbg gnumach-dev libc6-dbg python3.11-dbg systemtap-sdt-dev; do
  dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -q
  apt-get install -y -q "${need[@]}"
fi
if ! qemu-system-x86_64 --version 2>/dev/null | grep -q 'version 1[0-9]\.'; then
  bash scripts/install-qemu10.sh
fi
