# Shared by the bench/*.sh scripts: sourced, never run.
#
# Conventions every script follows: wrk on CPU 0, every server on CPU 1 with
# one worker (nginx worker_processes 1, Gatehouse TOKIO_WORKER_THREADS=1);
# a warm-up before each measurement; a sanity check that the URL answers
# 200 with the expected size before anything is measured.

# need COMMAND PACKAGE: installs PACKAGE from Debian when COMMAND is missing.
need() {
  command -v "$1" >/dev/null || {
    echo "installing $2" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
  }
}

# bench_workdir: a scratch directory in $WORK that nginx's `nobody` workers
# can read (mktemp makes it private, and nginx then serves 404s), removed
# on exit with everything the script started (see bench_cleanup).
bench_workdir() {
  WORK=$(mktemp -d)
  chmod 755 "$WORK"
  trap bench_cleanup EXIT
}

# bench_cleanup: on exit, stops the script's background jobs, every nginx
# whose config lives under $WORK and any varnishd on $WORK, runs the
# script's own `cleanup_extra` when it defines one, and removes $WORK.
bench_cleanup() {
  local conf
  kill $(jobs -p) 2>/dev/null || true
  for conf in $(find "$WORK" -name nginx.conf 2>/dev/null); do
    nginx -p "$(dirname "$conf")" -c "$conf" -s stop 2>/dev/null || true
  done
  pkill -f "varnishd.*$WORK" 2>/dev/null || true
  if declare -F cleanup_extra >/dev/null; then cleanup_extra || true; fi
  rm -rf "$WORK"
}

# nginx_conf DIR HTTP_BODY: writes DIR/nginx.conf, one worker with logs and
# pid in DIR (DIR/logs must exist), no access log, keep-alive without end;
# HTTP_BODY goes inside `http { }` (the servers, upstreams, cache paths).
nginx_conf() {
  cat > "$1/nginx.conf" <<CONF
worker_processes 1;
error_log $1/logs/error.log warn;
pid $1/nginx.pid;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
$2
}
CONF
}

# nginx_proxy_conf DIR LISTEN UPSTREAM: writes DIR/nginx.conf for nginx as
# a reverse proxy on LISTEN to UPSTREAM, with keep-alive upstream
# connections, sending `Host` and `X-Forwarded-For` as a usual
# `proxy_pass` setup does (DIR/logs must exist).
nginx_proxy_conf() {
  nginx_conf "$1" "  upstream up { server $3; keepalive 128; }
  server {
    listen $2;
    location / {
      proxy_pass http://up;
      proxy_http_version 1.1;
      proxy_set_header Connection \"\";
      proxy_set_header Host \$host;
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
    }
  }"
}

# nginx_fields_route CLUSTER: a Gatehouse route at /nginx-fields (no
# rewrite: the upstream serves the same files there) whose header rules
# remove the fields Gatehouse adds and nginx's proxy does not send, so the
# upstream receives what `nginx_proxy_conf` sends it.
nginx_fields_route() {
  cat <<CONF
[[routes]]
name = "nginx-fields"
path_prefix = "/nginx-fields"
cluster = "$1"
request_headers = { remove = ["x-forwarded-proto", "x-forwarded-host", "x-request-id", "traceparent"] }
CONF
}

# gatehouse_conf_base LISTEN ADMIN DATA_DIR [GATEWAY_LINES]: the start of a
# bench's Gatehouse config: no file watching (plus GATEWAY_LINES in
# `[gateway]`), one listener, the admin API with token `bench`, no access
# log, warnings only, data in DATA_DIR. `[storage]` comes last, so lines
# printed right after it still belong to it.
gatehouse_conf_base() {
  cat <<CONF
[gateway]
watch_config = false
${4:-}
[[listeners]]
bind = "$1"
[admin]
bind = "$2"
token = "bench"
[telemetry]
access_log = "off"
log_level = "warn"
[storage]
data_dir = "$3"
CONF
}

# build_gatehouse: a release build; sets GATEHOUSE_BIN. A GATEHOUSE_BIN set
# by the caller is used as it is (A/B runs of two builds).
build_gatehouse() {
  export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
  if [ -n "${GATEHOUSE_BIN:-}" ]; then return 0; fi
  cargo build --release -q -p gatehouse
  GATEHOUSE_BIN="$CARGO_TARGET_DIR/release/gatehouse"
}

# wait_http URL: waits (up to 10 s) until URL answers at all.
wait_http() {
  for _ in $(seq 1 300); do
    curl -s -o /dev/null "$1" && return 0
    sleep 0.1
  done
  echo "no answer from $1" >&2
  return 1
}

# expect URL BYTES [HEADER]: refuses to measure anything but the intended
# object (200 and exactly BYTES bytes).
expect() {
  local got
  got=$(curl -s -o /dev/null -w '%{http_code} %{size_download}' ${3:+-H "$3"} "$1")
  [ "$got" = "200 $2" ] || { echo "sanity check failed for $1: got '$got', want '200 $2'" >&2; exit 1; }
}

# measure CONNS URL [wrk args...] -> "rps p50 p99" after a 2 s warm-up.
# DURATION (seconds) comes from the calling script.
measure() {
  local conns=$1 url=$2 out
  shift 2
  taskset -c 0 wrk -t1 -c"$conns" -d2s "$@" "$url" >/dev/null 2>&1
  out=$(taskset -c 0 wrk -t1 -c"$conns" -d"${DURATION}s" --latency "$@" "$url")
  echo "$(awk '/^Requests\/sec/ {print $2}' <<<"$out") $(awk '$1=="50%" {print $2}' <<<"$out") $(awk '$1=="99%" {print $2}' <<<"$out")"
}

# row CELLS...: one markdown table row.
row() {
  local line="|" cell
  for cell in "$@"; do line+=" $cell |"; done
  echo "$line"
}

# ticks PIDS... [system]: clock ticks used so far by those processes, user
# + system time, or with `system` the system (kernel) time alone.
ticks() {
  local sum=0 pid expr='$14 + $15'
  if [ "${*: -1}" = system ]; then expr='$15'; set -- "${@:1:$#-1}"; fi
  for pid in "$@"; do
    sum=$((sum + $(awk "{print $expr}" "/proc/$pid/stat")))
  done
  echo "$sum"
}

# measure_cpu CONNS URL PIDS [wrk args...]
#   -> "rps p50 p99 cpu_us_per_request system_us_per_request"
# after a 2 s warm-up: CPU is the PIDS' user + system time over the
# measured run divided by the requests wrk completed, and the system
# (kernel) part of it alone ("–" without PIDS). With SIDE_PIDS set (an
# upstream sharing the proxy's core, say), a sixth field gives their CPU
# per request over the same run: what the proxy's way of calling them
# costs them.
measure_cpu() {
  local conns=$1 url=$2 pids=$3 out before after sys_before sys_after reqs cpu="–" sys="–"
  local side_before side_after side=""
  shift 3
  taskset -c 0 wrk -t1 -c"$conns" -d2s "$@" "$url" >/dev/null 2>&1
  # shellcheck disable=SC2086
  [ -n "$pids" ] && before=$(ticks $pids) && sys_before=$(ticks $pids system)
  # shellcheck disable=SC2086
  [ -n "${SIDE_PIDS:-}" ] && side_before=$(ticks $SIDE_PIDS)
  out=$(taskset -c 0 wrk -t1 -c"$conns" -d"${DURATION}s" --latency "$@" "$url")
  # shellcheck disable=SC2086
  [ -n "$pids" ] && after=$(ticks $pids) && sys_after=$(ticks $pids system)
  # shellcheck disable=SC2086
  [ -n "${SIDE_PIDS:-}" ] && side_after=$(ticks $SIDE_PIDS)
  reqs=$(awk '/requests in/ {print $1}' <<<"$out")
  if [ -n "$pids" ]; then
    cpu=$(per_request $((after - before)) "$reqs")
    sys=$(per_request $((sys_after - sys_before)) "$reqs")
  fi
  [ -n "${SIDE_PIDS:-}" ] && side=" $(per_request $((side_after - side_before)) "$reqs")"
  echo "$(awk '/^Requests\/sec/ {print $2}' <<<"$out") $(awk '$1=="50%" {print $2}' <<<"$out") $(awk '$1=="99%" {print $2}' <<<"$out") $cpu $sys$side"
}

# per_request TICKS REQUESTS -> microseconds of CPU per request.
per_request() {
  awk -v t="$1" -v hz="$(getconf CLK_TCK)" -v n="$2" 'BEGIN {printf "%.1f", t / hz * 1e6 / n}'
}

# median: the median of the numbers on stdin (space or newline separated).
median() { tr ' ' '\n' | grep . | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
# median_ms: the median of wrk latencies (`812.00us`, `1.20ms`, `2.1s`) in ms.
median_ms() { tr ' ' '\n' | grep . | awk '/us$/ {sub(/us/,""); print $1/1000; next} /ms$/ {sub(/ms/,""); print; next} /s$/ {sub(/s/,""); print $1*1000}' | median; }
