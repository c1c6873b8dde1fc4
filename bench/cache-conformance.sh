#!/usr/bin/env bash
# RFC 9111 conformance of Gatehouse's cache, nginx proxy_cache and Varnish,
# measured from outside with the HTTP caching test suite
# (https://github.com/http-tests/cache-tests, the suite behind
# cache-tests.fyi), in one run against one origin.
#
#   CACHE_TESTS=/path/to/cache-tests bench/cache-conformance.sh [OUT_DIR]
#
# CACHE_TESTS is a checkout of that suite with `npm install` done; this
# script neither downloads nor builds it. Each cache fronts the suite's own
# origin server; nginx and Varnish are set up as in the suite's Docker
# image. OUT_DIR (default a temp dir) keeps each cache's JSON results, in
# the suite's results format. Prints, per cache, the tests passed by kind
# (required, optimal, check), then the required tests Gatehouse fails.
# Not part of CI.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh

[ -n "${CACHE_TESTS:-}" ] && [ -d "$CACHE_TESTS/node_modules" ] || {
  echo "set CACHE_TESTS to a checkout of http-tests/cache-tests with 'npm install' done" >&2
  exit 2
}
CACHE_TESTS=$(cd "$CACHE_TESTS" && pwd)
OUT=${1:-$(mktemp -d)}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
bench_workdir

need nginx nginx-light
need varnishd varnish
need node nodejs

ORIGIN_PORT=18300
GH=127.0.0.1:18301
GH_ADMIN=127.0.0.1:18311
NGX=127.0.0.1:18302
VARNISH=127.0.0.1:18303

build_gatehouse

(cd "$CACHE_TESTS" && npm run --silent server --port=$ORIGIN_PORT --pidfile="$WORK/origin.pid" >"$WORK/origin.log" 2>&1) &
wait_http "http://127.0.0.1:$ORIGIN_PORT/"

mkdir -p "$WORK/gh" "$WORK/ngx/logs" "$WORK/ngx/store" "$WORK/ngx/tmp" "$WORK/varnish"
{
gatehouse_conf_base "$GH" "$GH_ADMIN" "$WORK/gh/data"
cat <<CONF
[clusters.origin]
targets = ["127.0.0.1:$ORIGIN_PORT"]
[[routes]]
name = "all"
path_prefix = "/"
cluster = "origin"
cache = {}
CONF
} > "$WORK/gh/gatehouse.toml"
"$GATEHOUSE_BIN" serve --config "$WORK/gh/gatehouse.toml" >"$WORK/gh/log" 2>&1 &
nginx_conf "$WORK/ngx" "  proxy_cache_path $WORK/ngx/store levels=1:2 keys_zone=my-cache:8m max_size=1000m inactive=600m;
  proxy_temp_path $WORK/ngx/tmp;
  server {
    listen $NGX;
    location / {
      proxy_pass http://127.0.0.1:$ORIGIN_PORT;
      proxy_cache my-cache;
      proxy_cache_revalidate on;
      proxy_http_version 1.1;
    }
  }"
nginx -p "$WORK/ngx" -c "$WORK/ngx/nginx.conf"
varnishd -n "$WORK/varnish" -a "$VARNISH" -b "127.0.0.1:$ORIGIN_PORT" -s malloc,64M \
  -p default_ttl=0 -p default_grace=0 -p default_keep=3600
for addr in $GH $NGX $VARNISH; do wait_http "http://$addr/"; done

for cache in gatehouse nginx varnish; do
  case $cache in gatehouse) addr=$GH;; nginx) addr=$NGX;; varnish) addr=$VARNISH;; esac
  (cd "$CACHE_TESTS" && npm run --silent cli --base="http://$addr") >"$OUT/$cache.json"
done

# Tests are counted by kind as on cache-tests.fyi: `required` (the default),
# `optimal` and `check`; browser-only tests do not apply to a shared cache.
cat > "$WORK/count.mjs" <<'JS'
import fs from 'fs'
const { default: suites } = await import(process.argv[2] + '/tests/index.mjs')
const results = JSON.parse(fs.readFileSync(process.argv[3]))
const kinds = { required: [0, 0], optimal: [0, 0], check: [0, 0] }
const failed = []
for (const suite of suites) {
  for (const test of suite.tests) {
    if (test.browser_only) continue
    const kind = kinds[test.kind || 'required']
    kind[1]++
    if (results[test.id] === true) kind[0]++
    else if ((test.kind || 'required') === 'required') failed.push(`  ${test.id}: ${JSON.stringify(results[test.id])}`)
  }
}
if (process.argv[4]) console.log(failed.join('\n'))
else console.log(Object.values(kinds).map(([p, n]) => `${p} of ${n}`).join(' '))
JS
echo "| cache | required | optimal | checks |"
echo "| --- | ---: | ---: | ---: |"
for cache in gatehouse nginx varnish; do
  read -r rp _ rn op _ on cp _ cn <<<"$(node "$WORK/count.mjs" "$CACHE_TESTS" "$OUT/$cache.json")"
  row "$cache" "$rp of $rn" "$op of $on" "$cp of $cn"
done
echo
echo "required tests Gatehouse fails:"
node "$WORK/count.mjs" "$CACHE_TESTS" "$OUT/gatehouse.json" list
echo "results: $OUT" >&2
