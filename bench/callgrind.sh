#!/usr/bin/env bash
# Instructions per request of a server, under valgrind's callgrind: the
# figure used to compare two builds on a noisy VM (repeat runs agree within
# 0.3%, where wrk moves by ±15%).
#
#   bench/callgrind.sh URL [WRK_ARGS...] -- COMMAND [ARGS...]
#
# Starts COMMAND under callgrind with one tokio worker, warms it up with wrk
# on URL, zeroes the counters, loads it with `wrk -t1 -c8 -d8s`, dumps, and
# prints "instructions requests instructions/request". Per thread figures
# (SEPARATE_THREADS=yes) show what the worker pays apart from helpers such
# as the dark launch's shadow thread. The upstream behind URL is the
# caller's. OUT (default a temp dir) keeps the profile for callgrind_annotate.
set -euo pipefail
url=$1
shift
wrk_args=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do wrk_args+=("$1"); shift; done
[ "${1:-}" = "--" ] || { echo "usage: $0 URL [WRK_ARGS...] -- COMMAND [ARGS...]" >&2; exit 2; }
shift
OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT"
TOKIO_WORKER_THREADS=1 valgrind --tool=callgrind --dump-instr=no \
  --separate-threads="${SEPARATE_THREADS:-no}" \
  --callgrind-out-file="$OUT/cg.out.%p" "$@" >"$OUT/server.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
for _ in $(seq 1 300); do
  curl -s -o /dev/null "$url" && break
  sleep 0.2
done
wrk -t1 -c8 -d4s "${wrk_args[@]}" "$url" >/dev/null
callgrind_control -z "$pid" >/dev/null
reqs=$(wrk -t1 -c8 -d8s "${wrk_args[@]}" "$url" | awk '/requests in/ {print $1}')
callgrind_control -d "$pid" >/dev/null
sleep 1
# The dump after zeroing is numbered .1 (per thread: .1-01, .1-02, ...).
total=0
for f in "$OUT"/cg.out."$pid".1*; do
  ir=$(awk '/^summary:/ {print $2}' "$f")
  [ "${SEPARATE_THREADS:-no}" = yes ] && echo "  $(basename "$f"): $ir ($((ir / reqs))/request)"
  total=$((total + ir))
done
echo "$total $reqs $((total / reqs))"
echo "profile: $OUT" >&2
