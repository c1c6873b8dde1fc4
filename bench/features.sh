#!/usr/bin/env bash
# What each Gatehouse feature costs on the request path, in one run, with wrk:
#   - proxying with no features (baseline) vs API-key auth on the route;
#   - dark launch off vs mirroring 100% of requests to a candidate;
#   - cache hits (1 KiB and 64 KiB objects) vs nginx proxy_cache and Varnish;
#   - hits over more URLs than memory holds: Gatehouse from memory and from
#     its disk tier (a second instance with a 256 KiB memory bound), nginx
#     proxy_cache and Varnish.
#
#   [ROUNDS=3] bench/features.sh [duration-seconds] [connections]
#
# Pinning as in bench/proxy.sh: wrk on CPU 0, servers on CPU 1 with one
# worker each; the dark launch's candidate on CPU 0 (see below). Not part
# of CI.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh

DURATION=${1:-10}
CONNS=${2:-64}
bench_workdir

need wrk wrk
need nginx nginx-light
need varnishd varnish

UP=127.0.0.1:18081
NGX_CACHE=127.0.0.1:18085
CAND=127.0.0.1:18087
VARNISH=127.0.0.1:18086
GH=127.0.0.1:18083
GH_ADMIN=127.0.0.1:18093
GH_DISK=127.0.0.1:18084
GH_DISK_ADMIN=127.0.0.1:18094
FLOOR=127.0.0.1:18088
FLOOR_MIRROR=127.0.0.1:18089

build_gatehouse
cargo build --release -q -p gatehouse --example minimal_proxy
FLOOR_BIN="$CARGO_TARGET_DIR/release/examples/minimal_proxy"

mkdir -p "$WORK/up/www" "$WORK/up/logs" "$WORK/cache/logs" "$WORK/cache/store" "$WORK/varnish" "$WORK/gh" "$WORK/gh-disk"
head -c 1024 /dev/zero | tr '\0' 'k' > "$WORK/up/www/1k"
head -c 65536 /dev/zero | tr '\0' 'L' > "$WORK/up/www/64k"
nginx_conf "$WORK/up" "  server {
    listen $UP;
    root $WORK/up/www;
    default_type application/json;
    add_header Cache-Control \"public, max-age=3600\";
    location ~ ^/[a-z]+/(.*)\$ { try_files /\$1 =404; }
  }"
# The candidate of the dark launch: the same files from a second nginx on
# wrk's core. In production the candidate runs on its own machines; here
# that keeps its work off the gateway's core, so the mirroring figure is
# the gateway's own cost (copying, queueing, the second call, comparing).
mkdir -p "$WORK/cand/logs"
sed -e "s#$WORK/up/logs#$WORK/cand/logs#; s#$WORK/up/nginx.pid#$WORK/cand/nginx.pid#; s#listen $UP;#listen $CAND;#" \
  "$WORK/up/nginx.conf" > "$WORK/cand/nginx.conf"
nginx_conf "$WORK/cache" "  proxy_cache_path $WORK/cache/store keys_zone=hot:10m max_size=256m;
  upstream up { server $UP; keepalive 128; }
  server {
    listen $NGX_CACHE;
    location / {
      proxy_cache hot;
      proxy_pass http://up;
      proxy_http_version 1.1;
      proxy_set_header Connection \"\";
    }
  }"
{
gatehouse_conf_base "$GH" "$GH_ADMIN" "$WORK/gh/data"
cat <<CONF
[cache]
max_bytes = "256MiB"
[clusters.up]
targets = ["$UP"]
[clusters.candidate]
targets = ["$CAND"]
[[routes]]
name = "plain"
path_prefix = "/plain"
cluster = "up"
[[routes]]
name = "auth"
path_prefix = "/auth"
cluster = "up"
auth = { methods = ["api_key"] }
[[routes]]
name = "mirror"
path_prefix = "/mirror"
cluster = "up"
[[routes]]
name = "cached"
path_prefix = "/cached"
cluster = "up"
cache = {}
[[dark_launches]]
name = "bench"
routes = ["mirror"]
candidate = "candidate"
sample_percent = 100.0
max_rps = 1000000
queue_capacity = 4096
concurrency = 64
CONF
} > "$WORK/gh/gatehouse.toml"

# The disk tier's instance: the same cached route, a memory bound that
# holds a few objects, the rest on disk.
{
gatehouse_conf_base "$GH_DISK" "$GH_DISK_ADMIN" "$WORK/gh-disk/data"
cat <<CONF
[cache]
max_bytes = "256KiB"
max_object_bytes = "64KiB"
disk = { path = "$WORK/gh-disk/cache", max_bytes = "256MiB" }
[clusters.up]
targets = ["$UP"]
[[routes]]
name = "cached"
path_prefix = "/cached"
cluster = "up"
cache = {}
CONF
} > "$WORK/gh-disk/gatehouse.toml"

taskset -c 1 nginx -p "$WORK/up" -c "$WORK/up/nginx.conf"
taskset -c 1 nginx -p "$WORK/cache" -c "$WORK/cache/nginx.conf"
taskset -c 0 nginx -p "$WORK/cand" -c "$WORK/cand/nginx.conf"
taskset -c 1 varnishd -n "$WORK/varnish" -a "$VARNISH" -b "$UP" -s malloc,256m -p thread_pools=1 -j none 2>/dev/null \
  || taskset -c 1 varnishd -n "$WORK/varnish" -a "$VARNISH" -b "$UP" -s malloc,256m -p thread_pools=1
# The floor of mirroring: the smallest hyper proxy, plain and sending every
# GET a second time to the candidate (body read and dropped, nothing compared).
TOKIO_WORKER_THREADS=1 taskset -c 1 "$FLOOR_BIN" "$FLOOR" "$UP" >/dev/null 2>&1 &
TOKIO_WORKER_THREADS=1 taskset -c 1 "$FLOOR_BIN" "$FLOOR_MIRROR" "$UP" "$CAND" >/dev/null 2>&1 &
TOKIO_WORKER_THREADS=1 taskset -c 1 "$GATEHOUSE_BIN" serve --config "$WORK/gh/gatehouse.toml" >/dev/null 2>&1 &
TOKIO_WORKER_THREADS=1 taskset -c 1 "$GATEHOUSE_BIN" serve --config "$WORK/gh-disk/gatehouse.toml" >/dev/null 2>&1 &
wait_http "http://$GH_DISK/cached/1k"
for _ in $(seq 1 100); do curl -sf "http://$GH/plain/1k" >/dev/null && break; sleep 0.1; done
KEY=$(curl -sf -X POST -H 'Authorization: Bearer bench' -H 'content-type: application/json' \
  -d '{"owner":"bench"}' "http://$GH_ADMIN/v1/keys" | sed -n 's/.*"secret":"\([^"]*\)".*/\1/p')
[ -n "$KEY" ] || { echo "could not create a key"; exit 1; }

expect "http://$GH/plain/1k" 1024
expect "http://$GH/auth/1k" 1024 "Authorization: Bearer $KEY"
expect "http://$GH/mirror/1k" 1024
expect "http://$CAND/mirror/1k" 1024
wait_http "http://$FLOOR_MIRROR/floor/1k"
expect "http://$FLOOR/floor/1k" 1024
expect "http://$FLOOR_MIRROR/floor/1k" 1024
for base in "http://$GH" "http://$NGX_CACHE" "http://$VARNISH"; do expect "$base/cached/1k" 1024; expect "$base/cached/64k" 65536; done

run() { # label url [header]
  local rps p50 p99 hdr=()
  [ -n "${3:-}" ] && hdr=(-H "$3")
  read -r rps p50 p99 <<<"$(measure "$CONNS" "$2" "${hdr[@]}")"
  row "$1" "$rps" "$p50" "$p99"
}

echo "wrk -t1 -c$CONNS -d${DURATION}s; servers on CPU 1, wrk on CPU 0; $(date -u +%F)"
echo
echo "| case | requests/s | p50 | p99 |"
echo "| --- | ---: | ---: | ---: |"
for size in 1k 64k; do
  curl -s "http://$GH/cached/$size" >/dev/null; curl -s "http://$NGX_CACHE/cached/$size" >/dev/null; curl -s "http://$VARNISH/cached/$size" >/dev/null
  run "cache hit, gatehouse ($size)" "http://$GH/cached/$size"
  run "cache hit, nginx proxy_cache ($size)" "http://$NGX_CACHE/cached/$size"
  run "cache hit, varnish ($size)" "http://$VARNISH/cached/$size"
done
# Hits over more URLs than memory holds: URLS distinct URLs per size
# (query strings are part of the key), each fetched once to store it, then
# requested in turn by every wrk connection. The disk instance's memory
# holds a few of them, so nearly every hit is a disk read: its
# `disk.reads` before and after the run show how many.
URLS=${URLS:-2048}
cat > "$WORK/crawl.lua" <<LUA
local n, i = $URLS, 0
local size = os.getenv("CRAWL_SIZE")
request = function()
  i = i % n + 1
  return wrk.format("GET", "/cached/" .. size .. "?i=" .. i)
end
LUA
disk_reads() {
  curl -sf -H 'Authorization: Bearer bench' "http://$GH_DISK_ADMIN/v1/cache/stats" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["disk"]["reads"])'
}
echo
echo "hits over $URLS URLs per size, each requested in turn:"
echo
echo "| case | requests/s | p50 | p99 |"
echo "| --- | ---: | ---: | ---: |"
for size in 1k 64k; do
  for base in "http://$GH" "http://$GH_DISK" "http://$NGX_CACHE" "http://$VARNISH"; do
    for i in $(seq 1 "$URLS"); do printf 'url = "%s"\noutput = "/dev/null"\n' "$base/cached/$size?i=$i"; done | curl -s -K -
  done
  sleep 2 # the disk tier's writer catches up
  for c in memory disk nginx varnish; do
    case $c in
      memory) base="http://$GH" label="cache hit, gatehouse memory";;
      disk) base="http://$GH_DISK" label="cache hit, gatehouse disk tier"; before=$(disk_reads);;
      nginx) base="http://$NGX_CACHE" label="cache hit, nginx proxy_cache";;
      varnish) base="http://$VARNISH" label="cache hit, varnish";;
    esac
    read -r rps p50 p99 <<<"$(CRAWL_SIZE=$size measure "$CONNS" "$base/" -s "$WORK/crawl.lua")"
    row "$label ($size)" "$rps" "$p50" "$p99"
    [ "$c" = disk ] && echo "  (disk reads during the warm-up and run: $(( $(disk_reads) - before )))" >&2
  done
done
curl -sf -H 'Authorization: Bearer bench' "http://$GH_DISK_ADMIN/v1/cache/stats" \
  | python3 -c 'import json,sys; s=json.load(sys.stdin); d=s["disk"]; print("disk instance after the runs: memory", s["bytes"], "bytes; disk", d["bytes"], "of", d["max_bytes"], "bytes,", d["entries"], "entries,", d["reads"], "reads,", d["write_drops"], "write drops")'
# Feature costs are a few percent against run-to-run noise of about as
# much on a shared VM, so the proxied cases run in ROUNDS interleaved rounds
# and the medians are compared.
ROUNDS=${ROUNDS:-3}
declare -A RPS P99
for r in $(seq 1 "$ROUNDS"); do
  for c in plain auth mirror floor floor_mirror; do
    hdr=()
    [ "$c" = auth ] && hdr=(-H "Authorization: Bearer $KEY")
    url="http://$GH/$c/1k"
    [ "$c" = floor ] && url="http://$FLOOR/floor/1k"
    [ "$c" = floor_mirror ] && url="http://$FLOOR_MIRROR/floor/1k"
    read -r rps p50 p99 <<<"$(measure "$CONNS" "$url" "${hdr[@]}")"
    RPS[$c]+="$rps "; P99[$c]+="$p99 "
  done
  # At 100% the shadow queue keeps the candidate busy after wrk stops.
  sleep 2
done
echo
# Two views of a feature's cost: the ratio of the medians, and the median
# of each round's own ratio (a round's cases run back to back, so the
# latter is less moved by drift over the run).
echo "| proxied 1 KiB, median of $ROUNDS interleaved rounds | requests/s | p99 | vs no features | median of per-round changes | rounds (req/s) |"
echo "| --- | ---: | ---: | ---: | ---: | --- |"
for c in plain auth mirror floor floor_mirror; do
  m=$(median <<<"${RPS[$c]}")
  case $c in floor*) b=floor;; *) b=plain;; esac
  base=$(median <<<"${RPS[$b]}")
  per_round=$(paste -d' ' <(tr ' ' '\n' <<<"${RPS[$c]}" | grep .) <(tr ' ' '\n' <<<"${RPS[$b]}" | grep .) \
    | awk '{printf "%.4f ", ($1 / $2 - 1) * 100}' | median)
  label=$(case $c in plain) echo "gatehouse, no features";; auth) echo "gatehouse, API key auth";; mirror) echo "gatehouse, mirroring 100%";;
    floor) echo "minimal hyper proxy (floor)";; floor_mirror) echo "floor, every GET sent twice";; esac)
  row "$label" "$m" "$(median_ms <<<"${P99[$c]}") ms" "$(awk -v a="$m" -v b="$base" 'BEGIN {printf "%+.1f%%", (a / b - 1) * 100}')" \
    "$(awk -v p="$per_round" 'BEGIN {printf "%+.1f%%", p}')" "${RPS[$c]% }"
done
echo
echo "dark launch after the run (mirrored = compared; the rest dropped or skipped):"
curl -s -H 'Authorization: Bearer bench' "http://$GH_ADMIN/v1/shadow/bench" \
  | python3 -c 'import json,sys; r=json.load(sys.stdin); a=r["assessment"]; print("compared:", sum(e["compared"] for e in a["endpoints"]), "dropped:", r["dropped"], "skipped:", r["skipped"], "verdict:", a["verdict"], a["reasons"][:2])'
