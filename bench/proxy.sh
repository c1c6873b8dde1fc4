#!/usr/bin/env bash
# Gateway throughput and latency: a local upstream (nginx serving static
# files) measured directly, through nginx as a reverse proxy, and through
# Gatehouse (its native HTTP/1.1 engine and, for comparison, hyper's), in
# one run, with wrk.
#
#   bench/proxy.sh [duration-seconds] [connections]
#
# Pinning: wrk runs on CPU 0; upstream and proxies on CPU 1 (one worker
# each: nginx worker_processes 1, Gatehouse TOKIO_WORKER_THREADS=1), so the
# comparison is one core of proxy against one core of proxy. Not part of CI.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh

DURATION=${1:-10}
CONNS=${2:-64}
bench_workdir
trap 'kill $(jobs -p) 2>/dev/null; nginx -p "$WORK/up" -c "$WORK/up/nginx.conf" -s stop 2>/dev/null; nginx -p "$WORK/px" -c "$WORK/px/nginx.conf" -s stop 2>/dev/null; rm -rf "$WORK"' EXIT

need wrk wrk
need nginx nginx-light

UP=127.0.0.1:18081
NGX=127.0.0.1:18082
GH=127.0.0.1:18083
GH_ADMIN=127.0.0.1:18093
GH_HYPER=127.0.0.1:18085
GH_HYPER_ADMIN=127.0.0.1:18095
FLOOR=127.0.0.1:18084

build_gatehouse
# The stack's floor: the smallest proxy on hyper-util + tokio + mimalloc.
cargo build --release -q -p gatehouse --example minimal_proxy
FLOOR_BIN="$CARGO_TARGET_DIR/release/examples/minimal_proxy"

# Upstream: nginx serving a small and a 64 KiB body.
mkdir -p "$WORK/up/www" "$WORK/up/logs" "$WORK/px/logs"
head -c 64 /dev/zero | tr '\0' 's' > "$WORK/up/www/small"
head -c 65536 /dev/zero | tr '\0' 'L' > "$WORK/up/www/64k"
nginx_conf "$WORK/up" "  server { listen $UP; root $WORK/up/www; location / { default_type text/plain; } }"
nginx_conf "$WORK/px" "  upstream up { server $UP; keepalive 128; }
  server {
    listen $NGX;
    location / {
      proxy_pass http://up;
      proxy_http_version 1.1;
      proxy_set_header Connection \"\";
      proxy_set_header Host \$host;
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
      proxy_buffering on;
    }
  }"
gatehouse_conf() { # engine listen admin
cat <<CONF
[gateway]
watch_config = false
http1_engine = "$1"
[[listeners]]
bind = "$2"
[admin]
bind = "$3"
token = "bench"
[storage]
data_dir = "$WORK/gh-$1"
[telemetry]
access_log = "off"
log_level = "warn"
[clusters.up]
targets = ["$UP"]
[[routes]]
name = "all"
cluster = "up"
CONF
}
gatehouse_conf native "$GH" "$GH_ADMIN" > "$WORK/gatehouse.toml"
gatehouse_conf hyper "$GH_HYPER" "$GH_HYPER_ADMIN" > "$WORK/gatehouse-hyper.toml"

taskset -c 1 nginx -p "$WORK/up" -c "$WORK/up/nginx.conf"
taskset -c 1 nginx -p "$WORK/px" -c "$WORK/px/nginx.conf"
TOKIO_WORKER_THREADS=1 taskset -c 1 "$GATEHOUSE_BIN" serve --config "$WORK/gatehouse.toml" >/dev/null 2>&1 &
TOKIO_WORKER_THREADS=1 taskset -c 1 "$GATEHOUSE_BIN" serve --config "$WORK/gatehouse-hyper.toml" >/dev/null 2>&1 &
TOKIO_WORKER_THREADS=1 taskset -c 1 "$FLOOR_BIN" "$FLOOR" "$UP" >/dev/null 2>&1 &
for gh in "$GH" "$GH_HYPER"; do
  for _ in $(seq 1 50); do curl -sf "http://$gh/small" >/dev/null && break; sleep 0.1; done
done
wait_http "http://$FLOOR/small"

for base in "http://$UP" "http://$NGX" "http://$FLOOR" "http://$GH" "http://$GH_HYPER"; do expect "$base/small" 64; expect "$base/64k" 65536; done

run() { # label url body
  local rps p50 p99
  read -r rps p50 p99 <<<"$(measure "$CONNS" "$2")"
  row "$1" "$3" "$rps" "$p50" "$p99"
}

echo "wrk -t1 -c$CONNS -d${DURATION}s; servers on CPU 1, wrk on CPU 0; $(nproc) cores; $(date -u +%F)"
echo
echo "| path | body | requests/s | p50 | p99 |"
echo "| --- | --- | ---: | ---: | ---: |"
for body in small 64k; do
  run "upstream direct" "http://$UP/$body" "$body"
  run "nginx proxy" "http://$NGX/$body" "$body"
  run "minimal hyper proxy (floor)" "http://$FLOOR/$body" "$body"
  run "gatehouse, native HTTP/1.1" "http://$GH/$body" "$body"
  run "gatehouse, hyper HTTP/1.1" "http://$GH_HYPER/$body" "$body"
done
