#!/usr/bin/env bash
# Builds snaptap and the demo program, then traces the demo: the README's first command.
set -euo pipefail
cd "$(dirname "$0")/.."
# A fresh Debian machine may lack a C compiler for the demo program.
if ! command -v gcc >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q && apt-get install -y -q gcc libc6-dev
fi
cargo build --release -p snaptap
mkdir -p target/demo
gcc -g -O2 -o target/demo/demo demo/demo.c -lpthread
cd target/demo
exec ../release/snaptap ../../demo/demo.stp -c "./demo ${1:-2000}"
