#!/usr/bin/env bash
# HTTP serving benchmark (issue 4, "Done when" 2): dabba serve against three peers and the
# HTTP ceiling, with wrk, on loopback, in one run. Called by bench/run.sh (`make bench`).
#
# Servers, started one at a time on 127.0.0.1 (ports HTTP_BENCH_PORT .. +4), each stopped
# before the next starts:
#   dabba    bin/dabba serve --repository examples/repository --log-level warn (defaults
#            otherwise); digits_mlp's newest version, which /v2/models/digits_mlp/infer serves
#   nginx    worker_processes = cores, access_log off, `return 200` of dabba's own response
#            body (byte for byte, so the same size): the ceiling for an HTTP/1.1 server here
#   fastapi  bench/http/fastapi_server.py under uvicorn --workers = cores (uvloop, httptools),
#            PyTorch module built from the same ONNX weights (checked against them at start)
#   node     bench/http/node_server.js: node:http + onnxruntime-node, cluster workers = cores
# Each server must first answer the benchmark request with 200 and the right digit (checked
# by curl + bench/http/check.py against a numpy reference of the ONNX graph). Then wrk
# (keep-alive, CONNECTIONS connections, WRK_THREADS threads, --latency) runs WARMUP seconds
# unrecorded and DURATION seconds recorded with bench/http/infer.lua (one held-out digit as
# v2 JSON). The order of servers rotates each round; ROUNDS rounds; the table reports medians.
#
# Then JSON vs binary on image_cnn (1x3x224x224 FP32, bench/http/make_image_model.py), dabba
# only, served from a temporary repository: image_json.lua vs image_binary.lua, same wrk
# settings, IMAGE_ROUNDS rounds alternating the order.
#
# wrk runs on the same cores as the server (2 here); that costs every server the same.
# Output: markdown table on stdout and in bench/results/http.md; raw wrk output in
# bench/results/http.log; per-run numbers in bench/results/http.tsv. Exit 1 if a server did
# not start, answered wrongly, or a wrk run failed; targets that are missed are reported
# (MISS), not turned into a failing exit.
#
# Env: BINDIR (bin), ROUNDS (3), IMAGE_ROUNDS (ROUNDS; 0 skips), DURATION (10), WARMUP (3),
#      CONNECTIONS (64), WRK_THREADS (2), HTTP_BENCH_PORT (18600), SERVERS ("dabba nginx
#      fastapi node"), NODE (node), PYTHON (/usr/bin/python3), WRK (wrk), NGINX (/usr/sbin/nginx).
set -u

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT" || exit 1
BINDIR="${BINDIR:-bin}"
DABBA="$BINDIR/dabba"
NODE="${NODE:-node}"
PYTHON="${PYTHON:-/usr/bin/python3}"
WRK="${WRK:-wrk}"
NGINX="${NGINX:-/usr/sbin/nginx}"
ROUNDS="${ROUNDS:-3}"
IMAGE_ROUNDS="${IMAGE_ROUNDS:-$ROUNDS}"
DURATION="${DURATION:-10}"
WARMUP="${WARMUP:-3}"
CONNECTIONS="${CONNECTIONS:-64}"
WRK_THREADS="${WRK_THREADS:-2}"
PORT0="${HTTP_BENCH_PORT:-18600}"
SERVERS="${SERVERS:-dabba nginx fastapi node}"
CORES="$(nproc)"
REPO=examples/repository
URL_PATH=/v2/models/digits_mlp/infer
IMAGE_MODEL=bench/models/image_cnn/1/model.onnx
RESULTS=bench/results
LOG="$RESULTS/http.log"
TSV="$RESULTS/http.tsv"
META="$RESULTS/http.meta"
HERE=bench/http

status=0
SPID=""
TMP="$(mktemp -d /tmp/dabba-http-bench.XXXXXX)"

say() { echo "bench/http: $*" >&2; }

# stop_server: SIGTERM to the server's process group (its own session, from setsid), then
# SIGKILL to whatever is left after 15 s.
stop_server() {
    [ -n "$SPID" ] || return 0
    kill -TERM -- "-$SPID" 2>/dev/null
    local i
    for i in $(seq 1 150); do
        kill -0 -- "-$SPID" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL -- "-$SPID" 2>/dev/null
    wait "$SPID" 2>/dev/null
    SPID=""
}
cleanup() { stop_server; rm -rf "$TMP"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

for tool in "$WRK" curl "$NODE" "$PYTHON" "$NGINX"; do
    command -v "$tool" >/dev/null 2>&1 || { say "$tool not found (make deps)"; exit 1; }
done
[ -x "$DABBA" ] || { say "$DABBA not built (run make)"; exit 1; }
mkdir -p "$RESULTS"

# digits_mlp's newest version: what /v2/models/digits_mlp/infer serves; the peers load it too
VERSION="$(ls "$REPO/digits_mlp" | grep -E '^[0-9]+$' | sort -n | tail -n 1)"
MODEL_ONNX="$REPO/digits_mlp/$VERSION/model.onnx"
[ -f "$MODEL_ONNX" ] || { say "$MODEL_ONNX missing"; exit 1; }
"$PYTHON" "$HERE/check.py" digit-body "$HERE/infer.lua" "$TMP/digit.json" >&2 || exit 1

# group_cpu_ticks SID: user+system clock ticks used so far by the live processes of session SID
group_cpu_ticks() {
    local sid=$1 sum=0 f line
    for f in /proc/[0-9]*/stat; do
        line="$(cat "$f" 2>/dev/null)" || continue
        line="${line##*) }"
        # shellcheck disable=SC2086
        set -- $line
        [ "${4:-}" = "$sid" ] && sum=$((sum + ${12} + ${13}))
    done
    echo "$sum"
}
HZ="$(getconf CLK_TCK)"

# port_free PORT: nothing answers on 127.0.0.1:PORT
port_free() { curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$1/" ; [ $? -eq 7 ]; }

# launch NAME CMD...: starts CMD in its own session, output to $TMP/NAME.log; sets SPID
launch() {
    local name=$1
    shift
    setsid "$@" >>"$TMP/$name.log" 2>&1 &
    SPID=$!
}

# wait_ready NAME URL BODY CTYPE [HEADER] [WORKERS]: until CURL answers 200 (and, with
# WORKERS, until that many ready files are in $TMP/ready); leaves the answer in $TMP/NAME.resp
wait_ready() {
    local name=$1 url=$2 body=$3 ctype=$4 header=${5:-} workers=${6:-0} code i
    local -a extra=()
    [ -n "$header" ] && extra=(-H "$header")
    for i in $(seq 1 600); do
        if ! kill -0 "$SPID" 2>/dev/null; then
            say "$name exited before it was ready: $(tail -n 5 "$TMP/$name.log" | tr '\n' ' ')"
            return 1
        fi
        code="$(curl -s -o "$TMP/$name.resp" -w '%{http_code}' --max-time 10 -X POST \
            -H "Content-Type: $ctype" "${extra[@]}" --data-binary "@$body" "$url")"
        if [ "$code" = 200 ] && [ "$(ls "$TMP/ready" 2>/dev/null | wc -l)" -ge "$workers" ]; then
            return 0
        fi
        sleep 0.2
    done
    say "$name not ready after 120 s (last status $code): $(tail -n 5 "$TMP/$name.log" | tr '\n' ' ')"
    return 1
}

# start_server NAME PORT: starts one server of the digit benchmark and checks its answer
start_server() {
    local name=$1 port=$2 url="http://127.0.0.1:$2$URL_PATH" workers=0
    if ! port_free "$port"; then say "port $port is in use"; return 1; fi
    rm -rf "$TMP/ready" && mkdir -p "$TMP/ready"
    case "$name" in
        dabba)
            launch dabba "$DABBA" serve --repository "$REPO" --http-address 127.0.0.1 \
                --http-port "$port" --log-level warn ;;
        nginx)
            [ -s "$TMP/dabba.body" ] || { say "nginx: no dabba response to copy (dabba failed)"; return 1; }
            rm -rf "$TMP/nginx" && mkdir -p "$TMP/nginx"
            cat >"$TMP/nginx/nginx.conf" <<EOF
# generated by bench/http/run.sh: the HTTP ceiling, a fixed body as large as dabba's answer
worker_processes $CORES;
daemon off;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000000;
    keepalive_timeout 75s;
    client_body_temp_path $TMP/nginx/body;
    proxy_temp_path $TMP/nginx/proxy;
    fastcgi_temp_path $TMP/nginx/fastcgi;
    uwsgi_temp_path $TMP/nginx/uwsgi;
    scgi_temp_path $TMP/nginx/scgi;
    server {
        listen 127.0.0.1:$port;
        location = $URL_PATH {
            default_type application/json;
            return 200 '$(cat "$TMP/dabba.body")';
        }
    }
}
EOF
            launch nginx "$NGINX" -e "$TMP/nginx/error.log" -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf" ;;
        fastapi)
            workers=$CORES
            launch fastapi env DABBA_BENCH_MODEL="$MODEL_ONNX" DABBA_BENCH_VERSION="$VERSION" \
                DABBA_BENCH_READY_DIR="$TMP/ready" "$PYTHON" -m uvicorn fastapi_server:app \
                --app-dir "$HERE" --host 127.0.0.1 --port "$port" --workers "$CORES" \
                --no-access-log --log-level warning ;;
        node)
            workers=$CORES
            launch node env DABBA_BENCH_READY_DIR="$TMP/ready" "$NODE" "$HERE/node_server.js" \
                "$MODEL_ONNX" "$port" --workers "$CORES" --version "$VERSION" ;;
    esac
    wait_ready "$name" "$url" "$TMP/digit.json" application/json "" "$workers" || return 1
    local verdict
    verdict="$("$PYTHON" "$HERE/check.py" digit "$TMP/$name.resp" "$MODEL_ONNX")"
    local rc=$?
    say "$name: $verdict"
    [ $rc -eq 0 ] || return 1
    if [ "$name" = dabba ]; then
        grep -q "\"model_version\":\"$VERSION\"" "$TMP/dabba.resp" ||
            { say "dabba did not answer with version $VERSION"; return 1; }
        cp "$TMP/dabba.resp" "$TMP/dabba.body"
    fi
    if [ "$name" = nginx ] && ! cmp -s "$TMP/nginx.resp" "$TMP/dabba.body"; then
        say "nginx's body differs from dabba's"
        return 1
    fi
    printf '%s\t%s\n' "response_bytes_$name" "$(stat -c %s "$TMP/$name.resp")" >>"$META"
    return 0
}

# measure ROUND SECTION NAME URL LUA [ENV...]: warm-up, then the recorded wrk run; appends a TSV row
measure() {
    local round=$1 section=$2 name=$3 url=$4 lua=$5
    shift 5
    local out="$TMP/wrk.out" parsed t0 t1 c0 c1 cpu
    env "$@" "$WRK" -t"$WRK_THREADS" -c"$CONNECTIONS" -d"${WARMUP}s" --timeout 30s -s "$lua" "$url" >/dev/null 2>&1
    c0="$(group_cpu_ticks "$SPID")"
    t0="$(date +%s.%N)"
    env "$@" "$WRK" -t"$WRK_THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --timeout 30s --latency -s "$lua" "$url" >"$out" 2>&1
    local rc=$?
    t1="$(date +%s.%N)"
    c1="$(group_cpu_ticks "$SPID")"
    cpu="$(awk -v a="$c0" -v b="$c1" -v t0="$t0" -v t1="$t1" -v hz="$HZ" 'BEGIN { printf "%.0f", 100 * (b - a) / hz / (t1 - t0) }')"
    {
        echo "## round $round: $section $name ($lua, ${DURATION}s after ${WARMUP}s warm-up; server CPU ${cpu}%)"
        cat "$out"
        echo
    } >>"$LOG"
    parsed="$("$PYTHON" "$HERE/check.py" wrk "$out")"
    if [ $rc -ne 0 ] || [ -z "$parsed" ] || [ "${parsed%% *}" = nan ]; then
        say "wrk failed on $name (rc $rc): $(tail -n 3 "$out" | tr '\n' ' ')"
        parsed="nan nan nan nan nan nan"
        status=1
    fi
    read -r rps p50 p99 non2xx sock reqs <<<"$parsed"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$section" "$name" "$rps" "$p50" "$p99" \
        "$non2xx" "$sock" "$reqs" "$cpu" >>"$TSV"
    say "round $round $section $name: $rps req/s, p50 ${p50} ms, p99 ${p99} ms, non-2xx $non2xx, socket errors $sock, server CPU ${cpu}%"
}

port_of() {
    case "$1" in dabba) echo "$PORT0" ;; nginx) echo $((PORT0 + 1)) ;; fastapi) echo $((PORT0 + 2)) ;;
        node) echo $((PORT0 + 3)) ;; *) echo $((PORT0 + 4)) ;; esac
}

started="$(date -u '+%Y-%m-%d %H:%M:%S UTC')"
load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
: >"$LOG"
printf 'round\tsection\tserver\trps\tp50_ms\tp99_ms\tnon2xx\tsocket_errors\trequests\tserver_cpu_pct\n' >"$TSV"
: >"$META"

# --- digits_mlp, JSON, one digit: dabba and the peers, rotating the order each round ---
read -r -a order <<<"$SERVERS"
for round in $(seq 1 "$ROUNDS"); do
    for name in "${order[@]}"; do
        port="$(port_of "$name")"
        if start_server "$name" "$port"; then
            measure "$round" digit "$name" "http://127.0.0.1:$port$URL_PATH" "$HERE/infer.lua"
        else
            say "round $round: $name failed to start or answered wrongly; see the lines above"
            printf '%s\tdigit\t%s\tnan\tnan\tnan\tnan\tnan\tnan\tnan\n' "$round" "$name" >>"$TSV"
            status=1
        fi
        stop_server
    done
    order=("${order[@]:1}" "${order[0]}")
done

# --- image_cnn, JSON vs binary request body, dabba only ---
if [ "$IMAGE_ROUNDS" -gt 0 ]; then
    if [ ! -f "$IMAGE_MODEL" ]; then "$PYTHON" "$HERE/make_image_model.py" "$IMAGE_MODEL" >&2 || status=1; fi
    mkdir -p "$TMP/image_repo/image_cnn/1" "$TMP/image"
    cp "$IMAGE_MODEL" "$TMP/image_repo/image_cnn/1/model.onnx"
    "$PYTHON" "$HERE/check.py" image-bodies "$TMP/image" >&2 || status=1
    hdr="$(cat "$TMP/image/header_bytes" 2>/dev/null)"
    port="$(port_of image)"
    url="http://127.0.0.1:$port/v2/models/image_cnn/infer"
    ok=1
    port_free "$port" || { say "port $port is in use"; ok=0; }
    if [ $ok -eq 1 ]; then
        rm -rf "$TMP/ready" && mkdir -p "$TMP/ready"
        launch dabba_image "$DABBA" serve --repository "$TMP/image_repo" --http-address 127.0.0.1 \
            --http-port "$port" --log-level warn
        wait_ready image_json "$url" "$TMP/image/image.json" application/json || ok=0
    fi
    if [ $ok -eq 1 ]; then
        wait_ready image_binary "$url" "$TMP/image/image.bin" application/octet-stream \
            "Inference-Header-Content-Length: $hdr" || ok=0
    fi
    for enc in json binary; do
        [ $ok -eq 1 ] || break
        v="$("$PYTHON" "$HERE/check.py" image "$TMP/image_$enc.resp" "$TMP/image")" || ok=0
        say "image_cnn $enc: $v"
    done
    if [ $ok -eq 1 ]; then
        printf '%s\t%s\n' json_body_bytes "$(stat -c %s "$TMP/image/image.json")" >>"$META"
        printf '%s\t%s\n' binary_body_bytes "$(stat -c %s "$TMP/image/image.bin")" >>"$META"
        encs=(json binary)
        for round in $(seq 1 "$IMAGE_ROUNDS"); do
            for enc in "${encs[@]}"; do
                measure "$round" image "dabba_$enc" "$url" "$HERE/image_$enc.lua" \
                    BODY_FILE="$TMP/image/image.$([ "$enc" = json ] && echo json || echo bin)" HEADER_BYTES="$hdr"
            done
            encs=("${encs[1]}" "${encs[0]}")
        done
    else
        say "image_cnn: dabba failed to start or answered wrongly"
        status=1
    fi
    stop_server
fi
load_after="$(cut -d' ' -f1-3 /proc/loadavg)"

# --- report ---
commit="$(git rev-parse --short HEAD 2>/dev/null || echo none)"
if [ -n "$(git status --porcelain 2>/dev/null | head -n 1)" ]; then commit="$commit (dirty tree)"; fi
{
    printf 'started\t%s\n' "$started"
    printf 'load_before\t%s\n' "$load_before"
    printf 'load_after\t%s\n' "$load_after"
    printf 'cores\t%s\n' "$CORES"
    printf 'cpu\t%s\n' "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
    printf 'commit\t%s\n' "$commit"
    printf 'version\t%s\n' "$VERSION"
    printf 'rounds\t%s\n' "$ROUNDS"
    printf 'image_rounds\t%s\n' "$IMAGE_ROUNDS"
    printf 'duration\t%s\n' "$DURATION"
    printf 'warmup\t%s\n' "$WARMUP"
    printf 'connections\t%s\n' "$CONNECTIONS"
    printf 'wrk_threads\t%s\n' "$WRK_THREADS"
    printf 'servers\t%s\n' "$SERVERS"
    printf 'wrk\t%s\n' "$("$WRK" -v 2>&1 | head -n 1 | cut -d' ' -f1-2)"
    printf 'nginx\t%s\n' "$("$NGINX" -v 2>&1 | sed 's/.*: //')"
    printf 'node\t%s\n' "$("$NODE" --version)"
    printf 'ort\t%s\n' "$("$NODE" -e "console.log(require(require.resolve('onnxruntime-node/package.json',{paths:['tests']})).version)" 2>/dev/null || echo '?')"
    printf 'command\t%s\n' "${BENCH_HTTP_COMMAND:-bench/http/run.sh}"
} >>"$META"
"$PYTHON" "$HERE/report.py" "$TSV" "$META" >"$RESULTS/http.md" || status=1
cat "$RESULTS/http.md"
echo
echo "bench/http: wrote $RESULTS/http.md (raw wrk output: $LOG, per run: $TSV)"
exit "$status"
