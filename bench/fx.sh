#!/usr/bin/env bash
# The fx service under load, release build, with wrk:
#   - first start on an empty SQLite database: import of the bundled ECB
#     history (until the listener answers), then a restart on the same file;
#   - a 25-year daily series for every currency, first (computed) and
#     repeated requests, for several bases;
#   - conversions per second and latency at CONNS connections: historical
#     dates and the latest rates; the latest rates table for one base.
#
#   bench/fx.sh [duration-seconds] [connections]
#
# wrk on CPU 0, the service on CPU 1 with one worker thread. Not part of CI.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh

DURATION=${1:-10}
CONNS=${2:-64}
bench_workdir

need wrk wrk
build_gatehouse

FX=127.0.0.1:18385
cat > "$WORK/fx.toml" <<CONF
listen = "$FX"
database_url = "sqlite://$WORK/fx.db"
# The bundled history ends on a fixed day: flag, never refuse, old rates.
[staleness.convert]
soft = "6h"
CONF

# start_fx: starts the service; sets FX_PID and STARTUP (until it answers).
start_fx() {
  local t0 t1
  t0=$(date +%s.%N)
  TOKIO_WORKER_THREADS=1 taskset -c 1 "$GATEHOUSE_BIN" fx serve --config "$WORK/fx.toml" >"$WORK/fx.log" 2>&1 &
  FX_PID=$!
  for _ in $(seq 1 1200); do
    curl -sf -o /dev/null "http://$FX/healthz" && break
    sleep 0.05
  done
  t1=$(date +%s.%N)
  STARTUP=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.2f s", b - a}')
}

echo "fx service, release build, one worker on CPU 1, wrk -t1 on CPU 0; $(nproc) cores; $(date -u +%F)"
echo
echo "| what | figure |"
echo "| --- | --- |"
start_fx
row "first start: bundled ECB history imported into SQLite, until it answers" "$STARTUP"
rows=$(grep -o 'rows: [0-9]*' "$WORK/fx.log" | head -1 | cut -d' ' -f2 || true)
[ -n "$rows" ] && row "rows imported" "$rows"
kill "$FX_PID"; wait "$FX_PID" 2>/dev/null || true
start_fx
row "restart on the same database (load into memory), until it answers" "$STARTUP"

# 25-year daily series, every currency, for several bases. The first request
# for a base computes its series; repeats come from the rendered-series cache.
series() { # base -> "first median bytes"
  local url="http://$FX/v1/rates?start=2001-01-01&end=2025-12-31&base=$1" first times
  first=$(curl -s -o /dev/null -w '%{time_total} %{size_download} %{http_code}' "$url")
  [ "${first##* }" = 200 ] || { echo "series for $1 answered ${first##* }" >&2; exit 1; }
  times=$(for _ in $(seq 1 9); do curl -s -o /dev/null -w '%{time_total}\n' "$url"; done | sort -n | sed -n 5p)
  awk -v f="${first%% *}" -v m="$times" -v b="$(cut -d' ' -f2 <<<"$first")" \
    'BEGIN {printf "first %.1f ms, repeated median %.1f ms (%.1f MB)", f * 1000, m * 1000, b / 1e6}'
}
for base in USD GBP JPY; do
  row "25-year daily series, every currency, base $base" "$(series "$base")"
done

# Conversions: wrk cycles through pairs and amounts with a Lua script.
cat > "$WORK/convert.lua" <<'LUA'
local pairs = {{"USD","JPY"},{"GBP","CHF"},{"EUR","USD"},{"JPY","KRW"},{"AUD","CAD"},{"SEK","NOK"}}
local n = 0
request = function()
  n = n + 1
  local p = pairs[(n % #pairs) + 1]
  local q = "from=" .. p[1] .. "&to=" .. p[2] .. "&amount=" .. (100 + n % 997) .. ".25" .. (DATE or "")
  return wrk.format("GET", "/v1/convert?" .. q)
end
LUA
sed 's/(DATE or "")/"\&date=2020-03-02"/' "$WORK/convert.lua" > "$WORK/convert-hist.lua"
sed 's/(DATE or "")/""/' "$WORK/convert.lua" > "$WORK/convert-latest.lua"
expect "http://$FX/v1/convert?from=USD&to=JPY&amount=100.25&date=2020-03-02" \
  "$(curl -s "http://$FX/v1/convert?from=USD&to=JPY&amount=100.25&date=2020-03-02" | wc -c)"

echo
echo "| conversions, $CONNS connections | requests/s | p50 | p99 |"
echo "| --- | ---: | ---: | ---: |"
read -r rps p50 p99 <<<"$(measure "$CONNS" "http://$FX" -s "$WORK/convert-hist.lua")"
row "historical date (2020-03-02), six pairs" "$rps" "$p50" "$p99"
read -r rps p50 p99 <<<"$(measure "$CONNS" "http://$FX" -s "$WORK/convert-latest.lua")"
row "latest rates, six pairs" "$rps" "$p50" "$p99"
read -r rps p50 p99 <<<"$(measure "$CONNS" "http://$FX/v1/rates/latest?base=USD")"
row "latest rates table, base USD" "$rps" "$p50" "$p99"
