#!/bin/sh
# boot.sh OUTDIR [--gdb PORT] [--args 'rounds=N report=N'] [--iso] [EXTRA QEMU ARGS...]
#
# Boots the GNU Mach test machine (see qemu-cmd.sh for the options) with the
# serial console on stdout. Stop it with Ctrl-C (or kill the qemu process).
# With --gdb PORT, QEMU listens for gdb on tcp::PORT while the VM runs.
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
CMD=$("$HERE/qemu-cmd.sh" "$@")
eval "exec $CMD"
