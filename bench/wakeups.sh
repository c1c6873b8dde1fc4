#!/usr/bin/env bash
# What the kernel does per proxied request, where CPU time per request
# cannot tell proxies apart: how often the proxy and the upstream go to
# sleep (voluntary context switches), how often the proxy is preempted
# (involuntary ones: the upstream it woke runs first), how often the
# client (`wrk`) is woken from another CPU (IPIs, from /proc/interrupts),
# and TCP segments (nstat). nginx's proxy and
# Gatehouse's plain route, 64 B, in interleaved rounds; plus what one
# cross-CPU wake-up costs the waker on this machine (a pipe write to a
# reader sleeping on the other CPU, against one on the same CPU).
#
#   [ROUNDS=2] bench/wakeups.sh [duration-seconds] [connections]
#
# Same pinning as bench/proxy.sh: wrk on CPU 0, upstream and proxy on
# CPU 1. Not part of CI.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh

DURATION=${1:-8}
CONNS=${2:-8}
ROUNDS=${ROUNDS:-2}
bench_workdir

need wrk wrk
need nginx nginx-light
need nstat iproute2
need gcc gcc

UP=127.0.0.1:18481
NGX=127.0.0.1:18482
GH=127.0.0.1:18483
GH_ADMIN=127.0.0.1:18493

build_gatehouse

mkdir -p "$WORK/up/www" "$WORK/up/logs" "$WORK/px/logs"
head -c 64 /dev/zero | tr '\0' 's' > "$WORK/up/www/small"
nginx_conf "$WORK/up" "  server { listen $UP; root $WORK/up/www; location / { default_type text/plain; } }"
nginx_proxy_conf "$WORK/px" "$NGX" "$UP"
{
  gatehouse_conf_base "$GH" "$GH_ADMIN" "$WORK/gh" "workers = 1"
  cat <<CONF
[clusters.up]
targets = ["$UP"]
[[routes]]
name = "all"
cluster = "up"
CONF
} > "$WORK/gatehouse.toml"

taskset -c 1 nginx -p "$WORK/up" -c "$WORK/up/nginx.conf"
taskset -c 1 nginx -p "$WORK/px" -c "$WORK/px/nginx.conf"
TOKIO_WORKER_THREADS=1 taskset -c 1 "$GATEHOUSE_BIN" serve --config "$WORK/gatehouse.toml" >/dev/null 2>&1 &
GH_PID=$!
wait_http "http://$GH/small"
for url in "http://$NGX/small" "http://$GH/small"; do expect "$url" 64; done
UP_PIDS=$(pgrep -P "$(cat "$WORK/up/nginx.pid")" | tr '\n' ' ')
NGX_PIDS=$(pgrep -P "$(cat "$WORK/px/nginx.pid")" | tr '\n' ' ')

# switches voluntary|nonvoluntary PIDS...: context switches of that kind
# so far, over every thread of PIDS (voluntary: a wait, a sleep).
switches() {
  local sum=0 kind=$1 pid status
  shift
  for pid in "$@"; do
    for status in /proc/"$pid"/task/*/status; do
      sum=$((sum + $(awk -v k="${kind}_ctxt_switches:" '$1 == k {print $2}' "$status")))
    done
  done
  echo "$sum"
}
# cpu0_ipis: interrupts CPU 0 took from other CPUs so far (function call
# and rescheduling IPIs: how a wake-up reaches a sleeping CPU).
cpu0_ipis() { awk '$1 == "CAL:" || $1 == "RES:" {n += $2} END {print n}' /proc/interrupts; }

# one URL PIDS -> "rps proxy_sleeps proxy_preempted upstream_sleeps client_ipis segments"
# (all but rps per request)
one() {
  local url=$1 pids=$2 out reqs p0 q0 u0 i0 p1 q1 u1 i1 segs
  taskset -c 0 wrk -t1 -c"$CONNS" -d2s "$url" >/dev/null
  nstat -n >/dev/null
  # shellcheck disable=SC2086
  p0=$(switches voluntary $pids); q0=$(switches nonvoluntary $pids); u0=$(switches voluntary $UP_PIDS); i0=$(cpu0_ipis)
  out=$(taskset -c 0 wrk -t1 -c"$CONNS" -d"${DURATION}s" "$url")
  # shellcheck disable=SC2086
  p1=$(switches voluntary $pids); q1=$(switches nonvoluntary $pids); u1=$(switches voluntary $UP_PIDS); i1=$(cpu0_ipis)
  segs=$(nstat TcpOutSegs | awk '$1 == "TcpOutSegs" {print $2}')
  reqs=$(awk '/requests in/ {print $1}' <<<"$out")
  awk -v rps="$(awk '/^Requests\/sec/ {print $2}' <<<"$out")" -v n="$reqs" \
    -v p=$((p1 - p0)) -v q=$((q1 - q0)) -v u=$((u1 - u0)) -v i=$((i1 - i0)) -v s="${segs:-0}" \
    'BEGIN {printf "%s %.3f %.3f %.3f %.3f %.2f\n", rps, p / n, q / n, u / n, i / n, s / n}'
}

# The cost of one wake-up of a sleeping reader, to the writer on CPU 1.
cat > "$WORK/wake.c" <<'C'
#define _GNU_SOURCE
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
static long ns(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec * 1000000000L + t.tv_nsec; }
static void pin(int cpu) { cpu_set_t s; CPU_ZERO(&s); CPU_SET(cpu, &s); sched_setaffinity(0, sizeof s, &s); }
static int cmp(const void *a, const void *b) { long x = *(const long *)a, y = *(const long *)b; return (x > y) - (x < y); }
int main(int argc, char **argv) {
  int fd[2], reader = atoi(argv[1]), n = 2000; long t[2000]; char c = 'x';
  if (pipe(fd)) return 1;
  if (fork() == 0) { pin(reader); while (read(fd[0], &c, 1) == 1 && c != 'q') {} return 0; }
  pin(1);
  for (int i = 0; i < n; i++) { usleep(1000); long a = ns(); if (write(fd[1], &c, 1) != 1) return 1; t[i] = ns() - a; }
  c = 'q'; if (write(fd[1], &c, 1) != 1) return 1;
  qsort(t, n, sizeof t[0], cmp);
  printf("%.1f\n", t[n / 2] / 1000.0);
  return 0;
}
C
gcc -O2 -o "$WORK/wake" "$WORK/wake.c"

declare -A ROW
for _ in $(seq 1 "$ROUNDS"); do
  ROW[nginx]+="$(one "http://$NGX/small" "$NGX_PIDS")|"
  ROW[gatehouse]+="$(one "http://$GH/small" "$GH_PID")|"
done

echo "wrk -t1 -c$CONNS -d${DURATION}s, $ROUNDS round(s), medians; servers on CPU 1, wrk on CPU 0; $(nproc) cores; $(uname -r)"
echo
echo "| 64 B | requests/s | proxy sleeps/request | proxy preempted/request | upstream sleeps/request | wrk woken by IPI/request | TCP segments/request |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
for label in nginx gatehouse; do
  cells=()
  for col in 1 2 3 4 5 6; do
    cells+=("$(tr '|' '\n' <<<"${ROW[$label]}" | grep . | awk -v c=$col '{print $c}' | median)")
  done
  row "$label" "${cells[@]}"
done
echo
echo "A pipe write that wakes a reader asleep on the other CPU: $("$WORK/wake" 0) µs (median);" \
  "on the writer's own CPU: $("$WORK/wake" 1) µs."
