#!/usr/bin/env bash
# Start-up at scale: how long snaptap takes to resolve a probe with a target variable
# in large distribution DWARF (pass 2: parse + resolve + plan), against gdb's time to
# set the same breakpoint on the same file, in the same run. Prints the median of
# RUNS runs of each and the ratio snaptap/gdb (target: <= 0.25).
#
# Needs: python3.11-dbg (python3.11d) and libc6-dbg. Usage: bench/startup.sh [RUNS]
# The binary is built in release mode under $CARGO_TARGET_DIR (default target/), or
# taken as is from $SNAPTAP when set (to compare two builds in the same run).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-7}
if [ -n "${SNAPTAP:-}" ]; then
    [ -x "$SNAPTAP" ] || { echo "SNAPTAP=$SNAPTAP is not an executable" >&2; exit 1; }
else
    TARGET_DIR=${CARGO_TARGET_DIR:-target}
    CARGO_TARGET_DIR=$TARGET_DIR cargo build --release -q -p snaptap
    SNAPTAP=$TARGET_DIR/release/snaptap
fi

# Median wall time in milliseconds of running "$@" RUNS times (output discarded).
median_ms() {
    local times=()
    for _ in $(seq "$RUNS"); do
        local t0 t1
        t0=$(date +%s%N)
        "$@" >/dev/null 2>&1 || { echo "failed: $*" >&2; return 1; }
        t1=$(date +%s%N)
        times+=($(( (t1 - t0) / 1000000 )))
    done
    printf '%s\n' "${times[@]}" | sort -n | sed -n "$(( (RUNS + 1) / 2 ))p"
}

bench() {
    local name=$1 file=$2 func=$3 var=$4
    if [ ! -e "$file" ]; then
        echo "$name: skipped, $file is missing"
        return
    fi
    local script="probe process(\"$file\").function(\"$func\") { println(\$$var) }"
    # Warm the page cache for both tools alike.
    cat "$file" >/dev/null
    local s g
    s=$(median_ms "$SNAPTAP" -p2 -e "$script")
    g=$(median_ms gdb -batch -nx -ex "break $func" "$file")
    awk -v n="$name" -v s="$s" -v g="$g" 'BEGIN {
        printf "%-28s snaptap %5d ms   gdb %5d ms   ratio %.2f\n", n, s, g, (g > 0 ? s / g : 0)
    }'
}

echo "median of $RUNS runs, $(nproc) cores"
bench "python3.11d PyObject_GetAttr" /usr/bin/python3.11d PyObject_GetAttr v
bench "libc.so.6 malloc" /lib/x86_64-linux-gnu/libc.so.6 malloc bytes
bench "python3.11 PyObject_GetAttr" /usr/bin/python3.11 PyObject_GetAttr v
