#!/usr/bin/env bash
# Scale-out costs with wrk, keys and rate limits on every request:
#   - one node, embedded (in-memory limiter) vs one node sharing limits
#     through Redis: the cost of the Redis round trip per decision;
#   - three nodes on one PostgreSQL and one Redis with the load split across
#     them (one wrk per node, connections divided) vs one node.
#
#   [QUOTA_PER_DAY=N] bench/fleet.sh [duration-seconds] [connections]
#
# The plan has a rate limit; QUOTA_PER_DAY adds a daily quota to it (with
# Redis, both are then decided in one call per request).
#
# Needs PostgreSQL and Redis as in .ci/run (GATEHOUSE_TEST_POSTGRES_URL,
# GATEHOUSE_TEST_REDIS_URL). wrk runs on CPU 0; the upstream nginx and every
# Gatehouse node (one worker each) on CPU 1; Redis and PostgreSQL are not
# pinned. With two cores the three-node figure shows what sharing state
# costs, not horizontal scaling: all nodes compete for one core. Not part
# of CI.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh

DURATION=${1:-10}
CONNS=${2:-64}
PG_URL=${GATEHOUSE_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}
REDIS_URL=${GATEHOUSE_TEST_REDIS_URL:-redis://127.0.0.1:6379}
bench_workdir
DB="gh_bench_$$"
cleanup_extra() {
  sleep 0.5
  psql "$PG_URL" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
}

need wrk wrk
need nginx nginx-light
need psql postgresql-client

build_gatehouse

UP=127.0.0.1:18181
psql "$PG_URL" -qc "CREATE DATABASE $DB" >/dev/null
FLEET_DB="${PG_URL%/*}/$DB"

mkdir -p "$WORK/up/www" "$WORK/up/logs"
head -c 1024 /dev/zero | tr '\0' 'k' > "$WORK/up/www/1k"
nginx_conf "$WORK/up" "  server { listen $UP; root $WORK/up/www; location ~ ^/[a-z]+/(.*)\$ { try_files /\$1 =404; } }"
taskset -c 1 nginx -p "$WORK/up" -c "$WORK/up/nginx.conf"

node_config() { # name port admin-port storage-lines
  mkdir -p "$WORK/$1"
  {
  gatehouse_conf_base "127.0.0.1:$2" "127.0.0.1:$3" "$WORK/$1/data"
  cat <<CONF
$4
[plans.bench]
rate_per_second = 10000000.0
burst = 10000000
${QUOTA_PER_DAY:+quota_per_day = $QUOTA_PER_DAY}
[clusters.up]
targets = ["$UP"]
[[routes]]
name = "auth"
path_prefix = "/auth"
cluster = "up"
auth = { methods = ["api_key"] }
CONF
  } > "$WORK/$1/gatehouse.toml"
}
start() { # name
  TOKIO_WORKER_THREADS=1 taskset -c 1 "$GATEHOUSE_BIN" serve --config "$WORK/$1/gatehouse.toml" >"$WORK/$1/log" 2>&1 &
  echo $! > "$WORK/$1/pid"
}
wait_up() { # port
  for _ in $(seq 1 100); do curl -s -o /dev/null "http://127.0.0.1:$1/auth/1k" && return; sleep 0.1; done
  echo "node on :$1 did not start"; exit 1
}
key() { # admin-port
  curl -sf -X POST -H 'Authorization: Bearer bench' -H 'content-type: application/json' \
    -d '{"owner":"bench","plan":"bench"}' "http://127.0.0.1:$1/v1/keys" | sed -n 's/.*"secret":"\([^"]*\)".*/\1/p'
}
expect_auth() { # url key
  expect "$1" 1024 "Authorization: Bearer $2"
}

SHARED="database_url = \"$FLEET_DB\"
redis_url = \"$REDIS_URL\"
redis_prefix = \"gh-bench-$$:\""
node_config embedded 18281 18291 ""
node_config a 18282 18292 "$SHARED"
node_config b 18283 18293 "$SHARED"
node_config c 18284 18294 "$SHARED"

wrk_one() { # conns url key -> "rps p50 p99"
  local out
  out=$(taskset -c 0 wrk -t1 -c"$1" -d"${DURATION}s" --latency -H "Authorization: Bearer $3" "$2")
  echo "$(awk '/^Requests\/sec/ {print $2}' <<<"$out") $(awk '$1=="50%" {print $2}' <<<"$out") $(awk '$1=="99%" {print $2}' <<<"$out")"
}

echo "wrk -c$CONNS -d${DURATION}s; nodes and upstream on CPU 1, wrk on CPU 0, Redis and PostgreSQL unpinned; $(date -u +%F)"
echo
echo "| case | requests/s | p50 | p99 |"
echo "| --- | ---: | ---: | ---: |"

start embedded; wait_up 18281
K=$(key 18291); expect_auth "http://127.0.0.1:18281/auth/1k" "$K"
taskset -c 0 wrk -t1 -c"$CONNS" -d2s -H "Authorization: Bearer $K" "http://127.0.0.1:18281/auth/1k" >/dev/null
read -r rps p50 p99 <<<"$(wrk_one "$CONNS" "http://127.0.0.1:18281/auth/1k" "$K")"
row "one node, embedded (in-memory limiter)" "$rps" "$p50" "$p99"
kill "$(cat "$WORK/embedded/pid")"

start a; wait_up 18282
K=$(key 18292); expect_auth "http://127.0.0.1:18282/auth/1k" "$K"
taskset -c 0 wrk -t1 -c"$CONNS" -d2s -H "Authorization: Bearer $K" "http://127.0.0.1:18282/auth/1k" >/dev/null
read -r rps p50 p99 <<<"$(wrk_one "$CONNS" "http://127.0.0.1:18282/auth/1k" "$K")"
row "one node, limits in Redis" "$rps" "$p50" "$p99"

start b; start c; wait_up 18283; wait_up 18284
sleep 1.5 # the key reaches b and c through the change feed; heartbeats see 3 nodes
for p in 18283 18284; do expect_auth "http://127.0.0.1:$p/auth/1k" "$K"; done
per=$((CONNS / 3))
pids=()
for p in 18282 18283 18284; do
  taskset -c 0 wrk -t1 -c"$per" -d"${DURATION}s" --latency -H "Authorization: Bearer $K" "http://127.0.0.1:$p/auth/1k" >"$WORK/wrk-$p" &
  pids+=($!)
done
wait "${pids[@]}"
total=0
for p in 18282 18283 18284; do
  r=$(awk '/^Requests\/sec/ {print $2}' "$WORK/wrk-$p")
  total=$(awk -v a="$total" -v b="$r" 'BEGIN {printf "%.0f", a + b}')
  worst99=$(awk '$1=="99%" {print $2}' "$WORK/wrk-$p")
done
row "three nodes, limits in Redis, load split (sum; p99 of node c)" "$total" "-" "$worst99"
echo
echo "Redis round trip per decision: see crates/gateway-redis/benches/limiter.rs"
