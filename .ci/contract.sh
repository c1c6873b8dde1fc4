#!/usr/bin/env bash
# Contract check: property-based requests (schemathesis) against the admin
# API's and the fx API's OpenAPI documents, on a `gatehouse up` started on
# free ports with a scratch data dir. A 5xx or an answer that does not
# match its documented schema fails; either is a bug in the server or in
# the document, never something to silence here.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n==> %s\n' "$*"; }

# Small and bounded: a few examples per operation, well under three minutes
# on two cores.
MAX_EXAMPLES=${CONTRACT_MAX_EXAMPLES:-15}
CHECKS=not_a_server_error,response_schema_conformance

venv=${CONTRACT_VENV:-$HOME/.cache/gatehouse-contract-venv}
if [ ! -x "$venv/bin/schemathesis" ]; then
    log "installing schemathesis into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q "schemathesis==4.32.5"
fi

log "building gatehouse"
cargo build -q -p gatehouse --bin gatehouse
bin="${CARGO_TARGET_DIR:-target}/debug/gatehouse"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
data=$(mktemp -d)
gateway_port=$(free_port)
admin_port=$(free_port)
pid=
cleanup() {
    if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
    rm -rf "$data"
}
trap cleanup EXIT

log "gatehouse up (gateway :$gateway_port, admin :$admin_port, data $data)"
"$bin" up --listen "127.0.0.1:$gateway_port" --admin-listen "127.0.0.1:$admin_port" \
    --data-dir "$data" >"$data/up.log" 2>&1 &
pid=$!
admin="http://127.0.0.1:$admin_port"
for _ in $(seq 1 120); do
    curl -fsS "$admin/healthz" >/dev/null 2>&1 && break
    kill -0 "$pid" 2>/dev/null || { cat "$data/up.log" >&2; exit 1; }
    sleep 1
done
curl -fsS "$admin/healthz" >/dev/null || { cat "$data/up.log" >&2; exit 1; }
token=$(cat "$data/admin-token")
# The fx service listens on a port of its own, named in the generated config.
fx_target=$(sed -n '/^\[clusters\.fx\]/,/^targets/ s/^targets = \["\([^"]*\)"\]/\1/p' "$data/gatehouse.toml")
fx="http://$fx_target"

run() {
    local name=$1 url=$2
    shift 2
    log "schemathesis: $name ($url)"
    "$venv/bin/schemathesis" run "$url" --checks "$CHECKS" --max-examples "$MAX_EXAMPLES" \
        --phases examples,fuzzing --workers 2 --seed 1 --request-timeout 20 \
        --generation-database none --no-color "$@"
}

status=0
run "admin API" "$admin/openapi.json" -H "Authorization: Bearer $token" || status=1
run "fx API" "$fx/openapi.json" || status=1
if [ "$status" != 0 ]; then
    log "gatehouse up's log"
    tail -n 50 "$data/up.log"
fi
exit "$status"
