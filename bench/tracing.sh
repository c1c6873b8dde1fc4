#!/usr/bin/env bash
# The cost of OpenTelemetry tracing: proxy requests/s and CPU per request
# with tracing off, sampling 1% and sampling 100% of requests, exporting
# over OTLP/HTTP to a local collector, in one run with wrk.
#
#   [ROUNDS=3] bench/tracing.sh [duration-seconds] [connections]
#
# Three gateways with the same routes (one worker each, on CPU 1) differ
# only in `[telemetry.otlp]`; the collector (a small OTLP/HTTP sink that
# accepts and counts spans) and the upstream nginx run on CPU 0 with wrk.
# Requests carry no `traceparent`, so `sample_ratio` decides. The cases
# run in interleaved rounds; each cell is the median. Not part of CI.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh

DURATION=${1:-10}
CONNS=${2:-64}
ROUNDS=${ROUNDS:-3}
bench_workdir

need wrk wrk
need nginx nginx-light

UP=127.0.0.1:18281
COLLECTOR=127.0.0.1:18290
build_gatehouse

mkdir -p "$WORK/up/www" "$WORK/up/logs"
head -c 1024 /dev/zero | tr '\0' 'k' > "$WORK/up/www/1k"
nginx_conf "$WORK/up" "  server { listen $UP; root $WORK/up/www; location / { default_type text/plain; } }"
taskset -c 0 nginx -p "$WORK/up" -c "$WORK/up/nginx.conf"

# The collector: answers every OTLP/HTTP export 200 and counts the bytes;
# threaded, so a batch never waits behind another.
cat > "$WORK/collector.py" <<'PY'
import http.server, socketserver, sys
class Sink(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass
class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
host, port = sys.argv[1].split(":")
Server((host, int(port)), Sink).serve_forever()
PY
taskset -c 0 python3 "$WORK/collector.py" "$COLLECTOR" &

# gatehouse_conf PORT OTLP_TABLE: a gateway on 127.0.0.1:PORT (admin PORT+10).
gatehouse_conf() {
  gatehouse_conf_base "127.0.0.1:$1" "127.0.0.1:$(($1 + 10))" "$WORK/gh-$1" "workers = 1"
  cat <<CONF
$2
[clusters.up]
targets = ["$UP"]
[[routes]]
name = "plain"
cluster = "up"
CONF
}
# otlp RATIO: the `[telemetry.otlp]` table sampling RATIO (none when empty).
otlp() {
  [ -n "$1" ] && printf '[telemetry.otlp]\nendpoint = "http://%s"\nsample_ratio = %s\n' "$COLLECTOR" "$1"
  return 0
}

# case: label|port|sample ratio (empty: tracing off)
CASES=(
  "tracing off|18283|"
  "1% sampled|18284|0.01"
  "100% sampled|18285|1.0"
)
declare -A PID
for c in "${CASES[@]}"; do
  IFS='|' read -r label port ratio <<<"$c"
  gatehouse_conf "$port" "$(otlp "$ratio")" > "$WORK/gh-$port.toml"
  TOKIO_WORKER_THREADS=1 taskset -c 1 "$GATEHOUSE_BIN" serve --config "$WORK/gh-$port.toml" >/dev/null 2>"$WORK/gh-$port.log" &
  PID[$label]=$!
done
for c in "${CASES[@]}"; do
  IFS='|' read -r _ port _ <<<"$c"
  wait_http "http://127.0.0.1:$((port + 10))/healthz"
  expect "http://127.0.0.1:$port/1k" 1024
done

declare -A RPS P99 CPU
for r in $(seq 1 "$ROUNDS"); do
  for c in "${CASES[@]}"; do
    IFS='|' read -r label port _ <<<"$c"
    read -r rps _ p99 cpu _ <<<"$(measure_cpu "$CONNS" "http://127.0.0.1:$port/1k" "${PID[$label]}")"
    RPS[$label]+="$rps "; P99[$label]+="$p99 "; CPU[$label]+="$cpu "
  done
done

# Spans each gateway exported and dropped, from its own /metrics.
spans() { # port outcome
  curl -s -H 'Authorization: Bearer bench' "http://127.0.0.1:$(($1 + 10))/metrics" |
    awk -v o="$2" '$1 == "gatehouse_trace_spans_total{outcome=\""o"\"}" {print $2}'
}

echo "wrk -t1 -c$CONNS -d${DURATION}s, 1 KiB, $ROUNDS interleaved round(s), medians; gateways on CPU 1, wrk, nginx and the collector on CPU 0; $(date -u +%F)"
echo
echo "| tracing | requests/s | vs off | CPU µs/request | p99 ms | spans exported | spans dropped |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
off=$(median <<<"${RPS[tracing off]}")
for c in "${CASES[@]}"; do
  IFS='|' read -r label port _ <<<"$c"
  rps=$(median <<<"${RPS[$label]}")
  row "$label" "$rps" "$(awk -v a="$rps" -v b="$off" 'BEGIN {printf "%.3f×", a / b}')" \
    "$(median <<<"${CPU[$label]}")" "$(median_ms <<<"${P99[$label]}")" \
    "$(spans "$port" exported)" "$(spans "$port" dropped)"
done
