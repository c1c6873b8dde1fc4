#!/usr/bin/env bash
# Gateway throughput, latency and CPU per request: a local upstream (nginx
# serving static files) measured directly, through nginx, HAProxy and Caddy
# as reverse proxies, through the smallest proxy on hyper (the floor), and
# through Gatehouse (its native HTTP/1.1 engine, with and without API-key
# auth, with only the fields nginx's proxy sends, and hyper's engine), in
# one run, with wrk.
#
#   [ROUNDS=1] [BASELINE_BIN=path] bench/proxy.sh [duration-seconds] [connections]
#
# BASELINE_BIN adds a row for another Gatehouse build (an older commit, say)
# on the plain route with the config that build understands (no
# `http1_engine`: the build's own default).
#
# Pinning: wrk runs on CPU 0; upstream and proxies on CPU 1 (one worker
# each: nginx worker_processes 1, HAProxy nbthread 1, Caddy GOMAXPROCS=1,
# Gatehouse workers = 1 and TOKIO_WORKER_THREADS=1), so the comparison is
# one core of proxy against one core of proxy. CPU per request is the
# proxy's own user + system time over the measured run (from
# /proc/PID/stat, the upstream's excluded) divided by the requests wrk
# completed. The upstream's own CPU per request is a column of its own: on
# a shared core, what a proxy's way of calling it costs the upstream is
# throughput the proxy loses. With ROUNDS > 1 the cases run in interleaved
# rounds and each cell is the median. Not part of CI.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh

DURATION=${1:-10}
CONNS=${2:-64}
ROUNDS=${ROUNDS:-1}
bench_workdir

need wrk wrk
need nginx nginx-light
need haproxy haproxy
need caddy caddy

UP=127.0.0.1:18081
NGX=127.0.0.1:18082
GH=127.0.0.1:18083
GH_ADMIN=127.0.0.1:18093
FLOOR=127.0.0.1:18084
GH_HYPER=127.0.0.1:18085
GH_HYPER_ADMIN=127.0.0.1:18095
HAPROXY=127.0.0.1:18086
CADDY=127.0.0.1:18087
GH_BASE=127.0.0.1:18088
GH_BASE_ADMIN=127.0.0.1:18098

build_gatehouse
# The stack's floor: the smallest proxy on hyper-util + tokio + mimalloc.
cargo build --release -q -p gatehouse --example minimal_proxy
FLOOR_BIN="$CARGO_TARGET_DIR/release/examples/minimal_proxy"

# Upstream: nginx serving a small and a 64 KiB body.
mkdir -p "$WORK/up/www" "$WORK/up/logs" "$WORK/px/logs"
head -c 64 /dev/zero | tr '\0' 's' > "$WORK/up/www/small"
head -c 65536 /dev/zero | tr '\0' 'L' > "$WORK/up/www/64k"
# The same files under /nginx-fields, so that route needs no rewrite.
mkdir -p "$WORK/up/www/nginx-fields"
cp "$WORK/up/www/small" "$WORK/up/www/64k" "$WORK/up/www/nginx-fields/"
nginx_conf "$WORK/up" "  server { listen $UP; root $WORK/up/www; location / { default_type text/plain; } }"
nginx_proxy_conf "$WORK/px" "$NGX" "$UP"
cat > "$WORK/haproxy.cfg" <<CONF
global
  nbthread 1
  maxconn 4096
defaults
  mode http
  option forwardfor
  http-reuse always
  timeout connect 5s
  timeout client 30s
  timeout server 30s
frontend proxy
  bind $HAPROXY
  default_backend up
backend up
  server up $UP
CONF
cat > "$WORK/Caddyfile" <<CONF
{
  admin off
  auto_https off
}
http://$CADDY {
  reverse_proxy $UP
}
CONF
gatehouse_conf() { # listen admin data-dir [http1_engine]
local engine=""
[ -n "${4:-}" ] && engine="http1_engine = \"$4\""
gatehouse_conf_base "$1" "$2" "$WORK/$3" "workers = 1
$engine"
cat <<CONF
[clusters.up]
targets = ["$UP"]
[[routes]]
name = "auth"
path_prefix = "/auth"
cluster = "up"
strip_prefix = "/auth"
auth = { methods = ["api_key"] }
CONF
# What nginx's proxy sends (Host and X-Forwarded-For): the fields
# Gatehouse adds by default cost the upstream about a quarter more
# instructions per request to parse (bench/upstream_cost.sh).
nginx_fields_route up
cat <<CONF
[[routes]]
name = "all"
cluster = "up"
CONF
}
gatehouse_conf "$GH" "$GH_ADMIN" gh-native native > "$WORK/gatehouse.toml"
gatehouse_conf "$GH_HYPER" "$GH_HYPER_ADMIN" gh-hyper hyper > "$WORK/gatehouse-hyper.toml"
# The baseline build may predate `workers` and `http1_engine`.
gatehouse_conf "$GH_BASE" "$GH_BASE_ADMIN" gh-base | grep -v '^workers' > "$WORK/gatehouse-base.toml"

taskset -c 1 nginx -p "$WORK/up" -c "$WORK/up/nginx.conf"
taskset -c 1 nginx -p "$WORK/px" -c "$WORK/px/nginx.conf"
taskset -c 1 haproxy -f "$WORK/haproxy.cfg" >/dev/null 2>&1 &
HAPROXY_PID=$!
GOMAXPROCS=1 taskset -c 1 caddy run --config "$WORK/Caddyfile" --adapter caddyfile >/dev/null 2>&1 &
CADDY_PID=$!
TOKIO_WORKER_THREADS=1 taskset -c 1 "$GATEHOUSE_BIN" serve --config "$WORK/gatehouse.toml" >/dev/null 2>&1 &
GH_PID=$!
TOKIO_WORKER_THREADS=1 taskset -c 1 "$GATEHOUSE_BIN" serve --config "$WORK/gatehouse-hyper.toml" >/dev/null 2>&1 &
GH_HYPER_PID=$!
TOKIO_WORKER_THREADS=1 taskset -c 1 "$FLOOR_BIN" "$FLOOR" "$UP" >/dev/null 2>&1 &
FLOOR_PID=$!
BASE_PID=
if [ -n "${BASELINE_BIN:-}" ]; then
  TOKIO_WORKER_THREADS=1 taskset -c 1 "$BASELINE_BIN" serve --config "$WORK/gatehouse-base.toml" >/dev/null 2>&1 &
  BASE_PID=$!
fi
for gh in "$GH" "$GH_HYPER" ${BASELINE_BIN:+"$GH_BASE"}; do
  for _ in $(seq 1 100); do curl -sf "http://$gh/small" >/dev/null && break; sleep 0.1; done
done
for url in "http://$FLOOR/small" "http://$HAPROXY/small" "http://$CADDY/small"; do wait_http "$url"; done
KEY=$(curl -sf -X POST -H 'Authorization: Bearer bench' -H 'content-type: application/json' \
  -d '{"owner":"bench"}' "http://$GH_ADMIN/v1/keys" | sed -n 's/.*"secret":"\([^"]*\)".*/\1/p')
[ -n "$KEY" ] || { echo "could not create a key"; exit 1; }
AUTH="Authorization: Bearer $KEY"

NGX_PIDS="$(cat "$WORK/px/nginx.pid") $(pgrep -P "$(cat "$WORK/px/nginx.pid")" | tr '\n' ' ')"
SIDE_PIDS="$(cat "$WORK/up/nginx.pid") $(pgrep -P "$(cat "$WORK/up/nginx.pid")" | tr '\n' ' ')"
export SIDE_PIDS
# case: label|url base|pids|header
CASES=(
  "upstream direct (no proxy)|http://$UP||"
  "nginx|http://$NGX|$NGX_PIDS|"
  "HAProxy|http://$HAPROXY|$HAPROXY_PID|"
  "Caddy|http://$CADDY|$CADDY_PID|"
  "minimal hyper proxy (floor)|http://$FLOOR|$FLOOR_PID|"
  "gatehouse, native HTTP/1.1|http://$GH|$GH_PID|"
  "gatehouse, native, API key auth|http://$GH/auth|$GH_PID|$AUTH"
  "gatehouse, native, nginx's fields|http://$GH/nginx-fields|$GH_PID|"
  "gatehouse, hyper HTTP/1.1|http://$GH_HYPER|$GH_HYPER_PID|"
)
[ -n "$BASE_PID" ] && CASES+=("gatehouse, baseline build|http://$GH_BASE|$BASE_PID|")

for c in "${CASES[@]}"; do
  IFS='|' read -r _ base _ hdr <<<"$c"
  expect "$base/small" 64 "$hdr"
  expect "$base/64k" 65536 "$hdr"
done

# one URL PIDS HEADER -> "rps p50 p99 cpu_us_per_request kernel_us upstream_us"
one() {
  local hdr=()
  [ -n "$3" ] && hdr=(-H "$3")
  measure_cpu "$CONNS" "$1" "$2" "${hdr[@]}"
}

declare -A RPS P50 P99 CPU SYS UPC
for r in $(seq 1 "$ROUNDS"); do
  for body in small 64k; do
    for c in "${CASES[@]}"; do
      IFS='|' read -r label base pids hdr <<<"$c"
      read -r rps p50 p99 cpu sys upc <<<"$(one "$base/$body" "$pids" "$hdr")"
      k="$body|$label"
      RPS[$k]+="$rps "; P50[$k]+="$p50 "; P99[$k]+="$p99 "; CPU[$k]+="$cpu "; SYS[$k]+="$sys "
      UPC[$k]+="$upc "
    done
  done
done


echo "wrk -t1 -c$CONNS -d${DURATION}s, $ROUNDS round(s), medians; servers on CPU 1, wrk on CPU 0; $(nproc) cores; $(date -u +%F)"
for body in small 64k; do
  echo
  nginx_rps=$(median <<<"${RPS[$body|nginx]}")
  echo "| $body | requests/s | vs nginx | CPU µs/request | of which kernel | upstream CPU µs/request | p50 ms | p99 ms |"
  echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
  for c in "${CASES[@]}"; do
    IFS='|' read -r label _ _ _ <<<"$c"
    k="$body|$label"
    rps=$(median <<<"${RPS[$k]}")
    row "$label" "$rps" "$(awk -v a="$rps" -v b="$nginx_rps" 'BEGIN {printf "%.2f×", a / b}')" \
      "$(median <<<"${CPU[$k]}")" "$(median <<<"${SYS[$k]}")" "$(median <<<"${UPC[$k]}")" "$(median_ms <<<"${P50[$k]}")" "$(median_ms <<<"${P99[$k]}")"
  done
done
