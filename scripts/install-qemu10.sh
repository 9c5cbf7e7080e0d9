#!/usr/bin/env bash
# Installs QEMU 10 (TCG plugin API v4) from Debian's bookworm-backports suite, for
# snaptap's in-emulator copier (crates/qemu-plugin). The archive is the one this machine
# already uses: the URIs are copied from the first stanza of debian.sources (or from the
# first `deb` line of sources.list), so no host name lives in this repository.
# Idempotent: re-running rewrites the same file and reinstalls nothing.
set -euo pipefail
SRC=/etc/apt/sources.list.d/backports.sources
DEB822=/etc/apt/sources.list.d/debian.sources
if [ "$(id -u)" != 0 ]; then
  echo "install-qemu10.sh: run as root" >&2
  exit 1
fi
uris=""
if [ -f "$DEB822" ]; then
  # The first stanza ends at the first blank line; its URIs: line names the archive.
  uris=$(awk 'BEGIN{RS=""} NR==1{print; exit}' "$DEB822" | sed -n 's/^URIs:[[:space:]]*//p' | head -n1)
fi
if [ -z "$uris" ] && [ -f /etc/apt/sources.list ]; then
  uris=$(awk '$1=="deb"{for(i=2;i<=NF;i++) if ($i !~ /^\[/ && $i !~ /\]$/) {print $i; exit}}' /etc/apt/sources.list)
fi
if [ -z "$uris" ]; then
  echo "install-qemu10.sh: no Debian archive found in $DEB822 or /etc/apt/sources.list" >&2
  exit 1
fi
want=$(printf 'Types: deb\nURIs: %s\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' "$uris")
if [ ! -f "$SRC" ] || [ "$(cat "$SRC")" != "$want" ]; then
  printf '%s\n' "$want" > "$SRC"
fi
# Only one apt may run at a time: wait for another one's dpkg lock instead of failing.
apt_retry() {
  local i
  for i in $(seq 1 60); do
    if "$@"; then return 0; fi
    if fuser /var/lib/dpkg/lock-frontend /var/lib/apt/lists/lock >/dev/null 2>&1; then
      sleep 5
    else
      return 1
    fi
  done
  return 1
}
ver=$(dpkg-query -W -f='${Version}' qemu-system-x86 2>/dev/null || true)
case "$ver" in
  1:10.*) echo "qemu-system-x86 $ver already installed"; exit 0 ;;
esac
apt_retry apt-get update
DEBIAN_FRONTEND=noninteractive apt_retry apt-get install -y -t bookworm-backports qemu-system-x86
qemu-system-x86_64 --version | head -n1
