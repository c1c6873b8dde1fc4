#!/usr/bin/env bash
# What a proxy's upstream requests cost the upstream, in instructions: an
# nginx upstream serving a 64 B file runs under callgrind while it is
# loaded directly, through nginx's proxy, through Gatehouse's plain route
# and through a Gatehouse route whose header rules remove the fields
# nginx's proxy does not send. Prints instructions per request for each.
#
#   bench/upstream_cost.sh
#
# Callgrind counts are repeatable whatever else the machine does, so the
# fields' cost shows here where wrk's noise hides it. The upstream runs as
# one process (`master_process off`) so callgrind sees its worker. Not
# part of CI.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
bench_workdir

need wrk wrk
need nginx nginx-light
need valgrind valgrind

UP=127.0.0.1:18381
NGX=127.0.0.1:18382
GH=127.0.0.1:18383
GH_ADMIN=127.0.0.1:18393

build_gatehouse

mkdir -p "$WORK/up/www/nginx-fields" "$WORK/up/logs" "$WORK/px/logs"
head -c 64 /dev/zero | tr '\0' 's' > "$WORK/up/www/small"
cp "$WORK/up/www/small" "$WORK/up/www/nginx-fields/"
nginx_conf "$WORK/up" "  server { listen $UP; root $WORK/up/www; location / { default_type text/plain; } }"
sed -i '1i master_process off;\ndaemon off;' "$WORK/up/nginx.conf"
nginx_proxy_conf "$WORK/px" "$NGX" "$UP"
{
  gatehouse_conf_base "$GH" "$GH_ADMIN" "$WORK/gh" "workers = 1"
  cat <<CONF
[clusters.up]
targets = ["$UP"]
CONF
  nginx_fields_route up
  cat <<CONF
[[routes]]
name = "all"
cluster = "up"
CONF
} > "$WORK/gatehouse.toml"

valgrind --tool=callgrind --dump-instr=no --callgrind-out-file="$WORK/cg.out.%p" \
  nginx -p "$WORK/up" -c "$WORK/up/nginx.conf" >"$WORK/valgrind.log" 2>&1 &
UP_PID=$!
taskset -c 0 nginx -p "$WORK/px" -c "$WORK/px/nginx.conf"
TOKIO_WORKER_THREADS=1 taskset -c 0 "$GATEHOUSE_BIN" serve --config "$WORK/gatehouse.toml" >/dev/null 2>&1 &
wait_http "http://$UP/small"
wait_http "http://$GH/small"

echo "| upstream nginx, loaded | instructions/request |"
echo "| --- | ---: |"
for c in "directly by wrk|http://$UP/small" "through nginx's proxy|http://$NGX/small" \
  "through Gatehouse's plain route|http://$GH/small" \
  "through a Gatehouse route that removes the four fields|http://$GH/nginx-fields/small"; do
  IFS='|' read -r label url <<<"$c"
  expect "$url" 64
  wrk -t1 -c8 -d2s "$url" >/dev/null
  callgrind_control -z "$UP_PID" >/dev/null 2>&1
  reqs=$(wrk -t1 -c8 -d4s "$url" | awk '/requests in/ {print $1}')
  callgrind_control -d "$UP_PID" >/dev/null 2>&1
  sleep 1
  dump=$(ls -t "$WORK"/cg.out."$UP_PID".* | head -1)
  ir=$(awk '/^summary:/ {print $2}' "$dump")
  row "$label" "$((ir / reqs))"
done
