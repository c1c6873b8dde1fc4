#!/usr/bin/env bash
# Proxy requests/s with the admin console open and refreshing vs closed, in
# one run, with wrk:
#   closed: nobody signed in to the console;
#   open:   a console session polling what its pages load (overview with
#           the full history, upstreams, cache stats, keys), once a second
#           (the overview page itself refreshes every 10 s: ten times less).
#
#   [ROUNDS=3] bench/console.sh [duration-seconds] [connections]
#
# Pinning as in bench/proxy.sh: wrk and the console poller on CPU 0 (the
# poller at nice 19, so its curl processes do not take wrk's time), the
# gateway on CPU 1 with one worker, the upstream nginx on CPU 0. Not part
# of CI.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh

DURATION=${1:-10}
CONNS=${2:-64}
ROUNDS=${ROUNDS:-3}
bench_workdir

need wrk wrk
need nginx nginx-light

UP=127.0.0.1:18181
GH=127.0.0.1:18183
GH_ADMIN=127.0.0.1:18193

build_gatehouse

mkdir -p "$WORK/up/www" "$WORK/up/logs" "$WORK/gh"
head -c 1024 /dev/zero | tr '\0' 'k' > "$WORK/up/www/1k"
nginx_conf "$WORK/up" "  server {
    listen $UP;
    root $WORK/up/www;
    default_type application/json;
    location ~ ^/[a-z]+/(.*)\$ { try_files /\$1 =404; }
  }"
{
gatehouse_conf_base "$GH" "$GH_ADMIN" "$WORK/gh/data" "workers = 1"
cat <<CONF
[clusters.up]
targets = ["$UP"]
[[routes]]
name = "plain"
path_prefix = "/plain"
cluster = "up"
CONF
} > "$WORK/gh/gatehouse.toml"

taskset -c 0 nginx -p "$WORK/up" -c "$WORK/up/nginx.conf"
TOKIO_WORKER_THREADS=1 taskset -c 1 "$GATEHOUSE_BIN" serve --config "$WORK/gh/gatehouse.toml" 2>"$WORK/gh/log" &
wait_http "http://$GH_ADMIN/healthz"
expect "http://$GH/plain/1k" 1024

# A console session, as the browser has it.
cookie=$(curl -s -D - -o /dev/null -H 'content-type: application/json' \
  -d '{"token":"bench"}' "http://$GH_ADMIN/v1/console/session" | awk -F'[ ;]' 'tolower($1)=="set-cookie:" {print $2}')
[ -n "$cookie" ] || { echo "console sign-in failed" >&2; exit 1; }

poll_console() {
  while true; do
    for p in /v1/console/overview /v1/upstreams /v1/cache/stats /v1/keys "/v1/history?series=total&window=day"; do
      nice -n 19 taskset -c 0 curl -s -o /dev/null -H "cookie: $cookie" "http://$GH_ADMIN$p"
    done
    sleep 1
  done
}

echo "| round | console | requests/s | p50 | p99 |"
echo "| --- | --- | --- | --- | --- |"
for r in $(seq 1 "$ROUNDS"); do
  read -r rps p50 p99 <<<"$(measure "$CONNS" "http://$GH/plain/1k")"
  row "$r" closed "$rps" "$p50" "$p99"
  poll_console &
  poller=$!
  read -r rps p50 p99 <<<"$(measure "$CONNS" "http://$GH/plain/1k")"
  kill "$poller"; wait "$poller" 2>/dev/null || true
  row "$r" "open, polling every 1 s" "$rps" "$p50" "$p99"
done
