#!/usr/bin/env bash
# The whole test suite: installs what it needs (scripts/deps.sh), then runs every test
# of the workspace, the real GNU Mach boots under QEMU included.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
# `cargo test` does not build a cdylib nothing links to: the QEMU plugin that the Mach
# tests load is built first.
cargo build --workspace
cargo test --workspace
