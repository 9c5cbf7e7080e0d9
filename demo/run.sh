#!/usr/bin/env bash
# Builds snaptap and the demo program, then traces the demo: the README's first command.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p snaptap
mkdir -p target/demo
gcc -g -O2 -o target/demo/demo demo/demo.c -lpthread
cd target/demo
exec ../release/snaptap ../../demo/demo.stp -c "./demo ${1:-2000}"
