#!/usr/bin/env bash
# Soak run: a release build of Gatehouse under mixed traffic for a long
# time, with its memory and open descriptors sampled, to show neither grows.
#
#   bench/soak.sh [duration-seconds] [sample-interval-seconds]
#
# Defaults: 600 s, a sample every 5 s. The traffic, all through the gateway,
# one wrk per kind, each checked before the run (200 and the expected body):
#   - keys: an authenticated route, API keys on a plan with a rate limit and
#     a daily quota, so every request is verified, limited and counted;
#   - cache: a cached route over 20,000 distinct URLs against a 4 MiB cache,
#     so entries are stored, hit and evicted all the time;
#   - fx and mirroring: conversions through the gateway to the fx service,
#     every one mirrored (up to max_rps) to a second fx service and compared;
#   - plain proxying.
# Every 20 s the config changes: a response header's value is edited in the
# watched file, or (every other time) the file is edited and SIGHUP sent;
# one API key is created and the previous one revoked through the admin API.
#
# Writes soak.csv (elapsed seconds, RSS in KiB and open descriptors of the
# gateway and of the fx service) to $SOAK_OUT (default bench/soak-out/) and
# prints a summary: start, end, max, and the slope after the first minute
# (warm-up: pools, the cache and the allocator settle) by least squares.
#
# Pinning as in the other scripts: the gateway and the fx services on CPU 1,
# wrk and nginx on CPU 0. Not part of CI.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh

DURATION=${1:-600}
INTERVAL=${2:-5}
OUT=${SOAK_OUT:-bench/soak-out}
bench_workdir
cleanup_extra() {
  wait 2>/dev/null || true
}

need wrk wrk
need nginx nginx-light

UP=127.0.0.1:18481
GH=127.0.0.1:18483
GH_ADMIN=127.0.0.1:18493
FX=127.0.0.1:18485
FX2=127.0.0.1:18486
ADMIN=(-H 'Authorization: Bearer soak')

build_gatehouse

# --- the origin -------------------------------------------------------------
mkdir -p "$WORK/up/www" "$WORK/up/logs" "$WORK/gh" "$WORK/fx"
head -c 1024 /dev/zero | tr '\0' 'k' > "$WORK/up/www/1k"
nginx_conf "$WORK/up" "  server {
    listen $UP;
    root $WORK/up/www;
    default_type application/json;
    add_header Cache-Control \"public, max-age=60\";
    location / { try_files /1k =404; }
  }"
taskset -c 0 nginx -p "$WORK/up" -c "$WORK/up/nginx.conf"

# --- two fx services: the primary and the dark launch's candidate -----------
fx_config() { # port db-file
  cat <<CONF
listen = "127.0.0.1:$1"
database_url = "sqlite://$2"
# The bundled history ends on a fixed day: flag, never refuse, old rates.
[staleness.convert]
soft = "6h"
CONF
}
start_fx() { # address config log
  TOKIO_WORKER_THREADS=1 taskset -c 1 "$GATEHOUSE_BIN" fx serve --config "$2" >"$3" 2>&1 &
  for _ in $(seq 1 1200); do
    curl -sf -o /dev/null "http://$1/healthz" && return 0
    sleep 0.1
  done
  echo "the fx service on $1 did not start: $(tail -n 5 "$3")" >&2
  exit 1
}
fx_config "${FX##*:}" "$WORK/fx/fx.db" > "$WORK/fx/fx.toml"
start_fx "$FX" "$WORK/fx/fx.toml" "$WORK/fx/fx.log"
FX_PID=$!
# The candidate starts from the primary's imported database.
cp "$WORK/fx/fx.db" "$WORK/fx/fx2.db"
fx_config "${FX2##*:}" "$WORK/fx/fx2.db" > "$WORK/fx/fx2.toml"
start_fx "$FX2" "$WORK/fx/fx2.toml" "$WORK/fx/fx2.log"

# --- the gateway -------------------------------------------------------------
# gateway_config GENERATION: the config, with GENERATION in a response header
# so each reload is a real change that can be seen on the wire.
gateway_config() {
  cat <<CONF
[gateway]
watch_config = true
[[listeners]]
bind = "$GH"
[admin]
bind = "$GH_ADMIN"
token = "soak"
[telemetry]
access_log = "off"
log_level = "warn"
[storage]
data_dir = "$WORK/gh/data"
[cache]
max_bytes = "4MiB"
max_object_bytes = "64KiB"
[plans.soak]
rate_per_second = 1000000.0
burst = 1000000
quota_per_day = 1000000000
[clusters.up]
targets = ["$UP"]
[clusters.fx]
targets = ["$FX"]
[clusters.fx_candidate]
targets = ["$FX2"]
[[routes]]
name = "plain"
path_prefix = "/plain"
cluster = "up"
response_headers = { set = { "x-soak-generation" = "$1" } }
[[routes]]
name = "keys"
path_prefix = "/keys"
cluster = "up"
auth = { methods = ["api_key"] }
[[routes]]
name = "cached"
path_prefix = "/cached"
cluster = "up"
cache = {}
[[routes]]
name = "fx"
path_prefix = "/fx"
strip_prefix = "/fx"
cluster = "fx"
[[dark_launches]]
name = "fx-candidate"
routes = ["fx"]
candidate = "fx_candidate"
sample_percent = 100.0
max_rps = 200
CONF
}
GEN=0
gateway_config "$GEN" > "$WORK/gh/gatehouse.toml"
TOKIO_WORKER_THREADS=1 taskset -c 1 "$GATEHOUSE_BIN" serve --config "$WORK/gh/gatehouse.toml" >"$WORK/gh/gatehouse.log" 2>&1 &
GH_PID=$!
wait_http "http://$GH_ADMIN/healthz" || {
  echo "the gateway did not start: $(tail -n 5 "$WORK/gh/gatehouse.log")" >&2
  exit 1
}

new_key() {
  curl -sf -X POST "${ADMIN[@]}" -H 'content-type: application/json' \
    -d '{"owner":"soak","plan":"soak"}' "http://$GH_ADMIN/v1/keys"
}
field() { sed -n "s/.*\"$1\":\"\([^\"]*\)\".*/\1/p"; }
KEYS=()
for _ in 1 2 3; do KEYS+=("$(new_key | field secret)"); done
for k in "${KEYS[@]}"; do [ -n "$k" ] || { echo "could not create a key" >&2; exit 1; }; done

expect "http://$GH/plain/x" 1024
expect "http://$GH/keys/x" 1024 "Authorization: Bearer ${KEYS[0]}"
expect "http://$GH/cached/0" 1024
# The pairs the fx traffic cycles through, each checked through the gateway
# against the fx service itself. An amount has no more decimals than its
# currency (JPY: none).
FX_PAIRS="USD:JPY GBP:CHF EUR:USD JPY:KRW AUD:CAD SEK:NOK"
for pair in $FX_PAIRS; do
  from=${pair%:*}
  cents=.25
  [ "$from" = JPY ] && cents=
  convert="/fx/v1/convert?from=$from&to=${pair#*:}&amount=100$cents&date=2020-03-02"
  expect "http://$GH$convert" "$(curl -s "http://$FX${convert#/fx}" | wc -c)"
done

# --- traffic -----------------------------------------------------------------
cat > "$WORK/keys.lua" <<LUA
local keys = {"${KEYS[0]}", "${KEYS[1]}", "${KEYS[2]}"}
local n = 0
request = function()
  n = n + 1
  return wrk.format("GET", "/keys/item/" .. (n % 1000), {["Authorization"] = "Bearer " .. keys[(n % #keys) + 1]})
end
LUA
cat > "$WORK/cached.lua" <<'LUA'
local n = 0
request = function()
  n = n + 1
  return wrk.format("GET", "/cached/" .. (n * 7919 % 20000) .. "?utm_source=soak&v=" .. (n % 3))
end
LUA
cat > "$WORK/fx.lua" <<LUA
local pairs = {$(for p in $FX_PAIRS; do printf '{"%s","%s"},' "${p%:*}" "${p#*:}"; done)}
local n = 0
request = function()
  n = n + 1
  local p = pairs[(n % #pairs) + 1]
  local cents = p[1] == "JPY" and "" or ".25"
  return wrk.format("GET", "/fx/v1/convert?from=" .. p[1] .. "&to=" .. p[2] .. "&amount=" .. (100 + n % 997) .. cents .. "&date=20" .. (10 + n % 15) .. "-03-02")
end
LUA

sample() { # pid -> "rss-kib fds"
  echo "$(awk '/^VmRSS/ {print $2}' "/proc/$1/status") $(ls "/proc/$1/fd" | wc -l)"
}

mkdir -p "$OUT"
CSV="$OUT/soak.csv"
echo "seconds,gateway_rss_kib,gateway_fds,fx_rss_kib,fx_fds" > "$CSV"
echo "soak: ${DURATION}s of mixed traffic, samples every ${INTERVAL}s to $CSV; $(nproc) cores; $(date -u +%F)"

start=$(date +%s)
WRK_PIDS=()
for kind in keys cached fx plain; do
  if [ "$kind" = plain ]; then args=("http://$GH/plain/x"); else args=(-s "$WORK/$kind.lua" "http://$GH"); fi
  taskset -c 0 wrk -t1 -c8 -d"${DURATION}s" --timeout 10s "${args[@]}" > "$WORK/wrk-$kind.txt" 2>&1 &
  WRK_PIDS+=($!)
done

# Config changes and key churn, every 20 s, while wrk runs.
(
  gen=0 churn=""
  while sleep 20; do
    gen=$((gen + 1))
    gateway_config "$gen" > "$WORK/gh/gatehouse.toml.new"
    mv "$WORK/gh/gatehouse.toml.new" "$WORK/gh/gatehouse.toml"
    # Every other time also SIGHUP: an explicit reload of the same file.
    if [ $((gen % 2)) = 0 ]; then kill -HUP "$GH_PID"; fi
    echo "$gen" > "$WORK/generation"
    id=$(new_key | field id || true)
    if [ -n "$churn" ]; then
      curl -sf -o /dev/null -X POST "${ADMIN[@]}" "http://$GH_ADMIN/v1/keys/$churn/revoke" || echo "revoking $churn failed" >&2
    fi
    churn=$id
  done
) &
CHURN_PID=$!

while :; do
  now=$(( $(date +%s) - start ))
  echo "$now,$(sample "$GH_PID" | tr ' ' ','),$(sample "$FX_PID" | tr ' ' ',')" >> "$CSV"
  [ "$now" -ge "$DURATION" ] && break
  sleep "$INTERVAL"
done
kill "$CHURN_PID" 2>/dev/null || true
wait "${WRK_PIDS[@]}" 2>/dev/null || true
sleep 2
echo "$(( $(date +%s) - start )),$(sample "$GH_PID" | tr ' ' ','),$(sample "$FX_PID" | tr ' ' ',')" >> "$CSV"

# --- summary -----------------------------------------------------------------
requests=0 errors=0
echo
echo "| traffic | requests | requests/s | non-2xx | socket errors |"
echo "| --- | ---: | ---: | ---: | ---: |"
for kind in keys cached fx plain; do
  f="$WORK/wrk-$kind.txt"
  n=$(awk '/requests in/ {print $1}' "$f")
  rps=$(awk '/^Requests\/sec/ {print $2}' "$f")
  bad=$(awk '/Non-2xx/ {print $NF}' "$f"); bad=${bad:-0}
  sock=$(awk -F'[ ,]+' '/Socket errors/ {print $4 + $6 + $8 + $10}' "$f"); sock=${sock:-0}
  row "$kind" "$n" "$rps" "$bad" "$sock"
  requests=$((requests + n)); errors=$((errors + bad + sock))
done
echo
echo "requests served: $requests; errors (non-2xx and socket errors): $errors"

metrics=$(curl -s "${ADMIN[@]}" "http://$GH_ADMIN/metrics")
reloads_ok=$(awk '/^gatehouse_config_reloads_total.*result="ok"/ {print $2}' <<<"$metrics")
reloads_bad=$(awk '/^gatehouse_config_reloads_total.*result="rejected"/ {print $2}' <<<"$metrics")
generation=$(curl -s -D - -o /dev/null "http://$GH/plain/x" | awk -F': ' 'tolower($1)=="x-soak-generation" {print $2}' | tr -d '\r')
echo "config generations written: $(cat "$WORK/generation" 2>/dev/null || echo 0); reloads applied: ${reloads_ok:-0}, rejected: ${reloads_bad:-0}; generation served at the end: $generation"
curl -s "${ADMIN[@]}" "http://$GH_ADMIN/v1/shadow/fx-candidate" \
  | python3 -c 'import json,sys; r=json.load(sys.stdin); a=r["assessment"]; print("dark launch: compared", sum(e["compared"] for e in a["endpoints"]), "dropped", r["dropped"], "verdict", a["verdict"], "because", a["reasons"])' \
  || true

echo
echo "| process | figure | start | end | max | slope after 60 s |"
echo "| --- | --- | ---: | ---: | ---: | ---: |"
summary() { # column process figure unit divisor decimals
  awk -F, -v c="$1" -v proc="$2" -v fig="$3" -v unit="$4" -v div="$5" -v d="$6" '
    NR == 1 { next }
    { v = $c / div; if (n == 0) first = v; last = v; if (v > max) max = v; n++ }
    $1 >= 60 { x = $1 / 60; k++; sx += x; sy += v; sxx += x * x; sxy += x * v }
    END {
      slope = (k > 1) ? (k * sxy - sx * sy) / (k * sxx - sx * sx) : 0
      f = "%." d "f" unit
      printf "| %s | %s | " f " | " f " | " f " | %+.3f" unit "/min |\n", proc, fig, first, last, max, slope
    }' "$CSV"
}
summary 2 gateway RSS " MiB" 1024 1
summary 3 gateway descriptors "" 1 0
summary 4 "fx service" RSS " MiB" 1024 1
summary 5 "fx service" descriptors "" 1 0
