#!/usr/bin/env bash
# Response-cache benchmark: dabba serving a Zipf workload of 10 000 distinct requests per model
# with no cache, with the in-process L1, and with L1 + Redis (L2), against the HTTP ceiling
# measured in the same run; then the eviction-policy study of the L1 on its own. Called by
# bench/run.sh (`make bench`).
#
# Targets (the issue): a hit is >= 5x faster than a miss at p50, and L1 throughput reaches
# >= 80 % of the HTTP ceiling measured in the same run.
#
# Requests: bench/cache/make_bodies.py writes COUNT (10 000) distinct v2 JSON bodies per model
# (digits_cnn: perturbed scikit-learn digits; text_classifier: Debian package descriptions,
# natural token lengths); bench/cache/zipf.lua posts body r with probability ~ 1 / r^ZIPF_S.
# Models (MODELS): digits_cnn (examples/repository/digits_cnn/1) and text_classifier (its
# newest version); each served alone from a copy of its folder under TMP whose config.json adds
# "response_cache": {"enable": true, "ttl_seconds": 3600} (or leaves it off).
# Modes (MODES), each a fresh `dabba serve --log-level warn` with a cold cache:
#   none    response cache off
#   l1      response cache on, default L1 (128 MiB, SIEVE), no Redis
#   l1+l2   the same plus --redis redis://127.0.0.1:RPORT/0: a redis-server this script starts
#           on a free loopback port (--save "" --appendonly no), FLUSHALL before each such mode
#   l2      (optional) --cache-size 0 with Redis: every hit is an L2 hit
#   l1-warm the l1 server after one pass over every body (cache.py fill) before its warm-up:
#           the steady state of a long-running server, where the 10 000 compulsory misses
#           (each a model run) are behind it; this is the L1 throughput the ceiling target
#           compares (the cold l1 row's recorded window still computes the tail's first
#           requests)
# Per round, model and mode: the answers to a handful of bodies (each asked twice) must equal
# the no-cache server's answers (asked once at the start), before and after the load, and the
# Dabba-Cache header must say what the mode allows (bench/cache/cache.py check); then wrk
# (keep-alive, -c CONNECTIONS -t WRK_THREADS, --latency) with zipf.lua runs WARMUP seconds
# unrecorded - which also fills the cache, so the recorded window sees the warm cache a
# long-running server would have - and DURATION seconds recorded. The hit ratio is the
# difference of dabba_cache_{hits,misses}_total around the recorded window (lookups answered
# by either tier / lookups), not counted from the Dabba-Cache headers, which would cost wrk a
# Lua call per answer on the server's cores.
# The HTTP ceiling, per round: nginx (worker_processes = cores, access_log off) answering the
# same wrk load on the model's path with `return 200` of dabba's answer to the hottest body
# (the same bytes, so the same size), as bench/http/run.sh does; and dabba's own
# `GET /v2/health/live` (on the round's first dabba server, after that server's load), both
# at the same -c, after CEIL_WARMUP seconds, for CEIL_DURATION seconds (a rate needs no more).
# The order of the modes and nginx rotates each round (a noisy 2-core box hurts them alike);
# ROUNDS rounds; the table reports medians over rounds.
# Hit vs miss at p50, once per model after the rounds, at one connection (wrk -c1 -t1):
#   server-side: a fresh L1 server with --log-level info --log-format json takes the Zipf load
#     from cold for C1_DURATION s; the access log's latency_ms split by its "cache" field gives
#     p50 of miss and hit-l1 (with l2 in MODES, the same on an l2 server for hit-l2). It is a
#     pass of its own so that the -c CONNECTIONS runs carry no per-request log line (its cost
#     was within this machine's run-to-run noise in a spot check, but it is a cost);
#   client-side: wrk -c1 on an all-hit workload (an L1 server after one pass over all COUNT
#     bodies, cache.py fill; the recorded window's misses are reported and should be 0) vs
#     wrk -c1 with the response cache off (every request computes), C1_DURATION s each after 1 s.
# Then the policy study (POLICY=1): bench/cache/policy.c built against $BINDIR/libdabba.a with
# the Makefile's CFLAGS and LDLIBS, output in bench/results/cache_policy.md.
#
# wrk runs on the same cores as the server; that costs every mode the same.
# Output: markdown table on stdout and in bench/results/cache.md (one line per target:
# PASS/MISS with the numbers); raw wrk output, check lines and server logs of failed starts in
# bench/results/cache.log; per-run numbers in bench/results/cache.tsv (and cache.meta).
# Exit 1 if a server did not start or answered wrongly (non-2xx under load included), Redis did
# not start, or a wrk run failed; a missed target is reported (MISS), not a failing exit.
#
# Env: BINDIR (bin), ROUNDS (3), DURATION (15), WARMUP (5), CEIL_WARMUP (1), CEIL_DURATION (10),
#      C1_DURATION (5),
#      CONNECTIONS (64), WRK_THREADS (2), MODES ("none l1 l1+l2"; add l2 for L2-only),
#      MODELS ("digits_cnn text_classifier"), COUNT (10000), ZIPF_S (1.0), POLICY (1; 0 skips
#      the policy study), POLICY_ARGS (extra flags for bench/cache/policy), CACHE_BENCH_PORT
#      (18800: dabba; +1: nginx), REDIS_PORT (18890: the first port tried for Redis),
#      PYTHON (/usr/bin/python3), WRK (wrk), NGINX (/usr/sbin/nginx), REDIS_SERVER
#      (redis-server), REDIS_CLI (redis-cli).
set -u

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT" || exit 1
BINDIR="${BINDIR:-bin}"
DABBA="$BINDIR/dabba"
PYTHON="${PYTHON:-/usr/bin/python3}"
WRK="${WRK:-wrk}"
NGINX="${NGINX:-/usr/sbin/nginx}"
REDIS_SERVER="${REDIS_SERVER:-redis-server}"
REDIS_CLI="${REDIS_CLI:-redis-cli}"
ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-15}"
WARMUP="${WARMUP:-5}"
CEIL_WARMUP="${CEIL_WARMUP:-1}"
CEIL_DURATION="${CEIL_DURATION:-10}"
C1_DURATION="${C1_DURATION:-5}"
CONNECTIONS="${CONNECTIONS:-64}"
WRK_THREADS="${WRK_THREADS:-2}"
MODES="${MODES:-none l1 l1+l2 l1-warm}"
MODELS="${MODELS:-digits_cnn text_classifier}"
COUNT="${COUNT:-10000}"
ZIPF_S="${ZIPF_S:-1.0}"
POLICY="${POLICY:-1}"
POLICY_ARGS="${POLICY_ARGS:-}"
PORT="${CACHE_BENCH_PORT:-18800}"
NGINX_PORT=$((PORT + 1))
RPORT0="${REDIS_PORT:-18890}"
CORES="$(nproc)"
RESULTS=bench/results
LOG="$RESULTS/cache.log"
TSV="$RESULTS/cache.tsv"
META="$RESULTS/cache.meta"
HERE=bench/cache
HTTP=bench/http

status=0
SPID=""
RPID=""
RPORT=""
TMP="$(mktemp -d /tmp/dabba-cache-bench.XXXXXX)"

say() { echo "bench/cache: $*" >&2; }

# stop_server, port_free, launch, wait_ready (shared with bench/http/run.sh)
# shellcheck source=bench/http/lib.sh
. "$HTTP/lib.sh"

stop_redis() {
    [ -n "$RPID" ] || return 0
    kill -TERM -- "-$RPID" 2>/dev/null
    local _
    for _ in $(seq 1 50); do
        kill -0 -- "-$RPID" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL -- "-$RPID" 2>/dev/null
    wait "$RPID" 2>/dev/null
    RPID=""
}
# session_ticks SID: user+system clock ticks used so far by the live processes of session SID;
# lib.sh's group_cpu_ticks with the shell's own `read` instead of a `cat` per process, which
# costs about a second per call on this machine (fork + exec ~10 ms, ~80 processes)
session_ticks() {
    local sid=$1 sum=0 f line
    local -a fld
    for f in /proc/[0-9]*/stat; do
        read -r line 2>/dev/null <"$f" || continue
        read -r -a fld <<<"${line##*) }"
        [ "${fld[3]:-}" = "$sid" ] && sum=$((sum + fld[11] + fld[12]))
    done
    echo "$sum"
}
# shellcheck disable=SC2317  # called by the EXIT trap
cleanup() { stop_server; stop_redis; rm -rf "$TMP"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

is_count() { [[ "$1" =~ ^[0-9]+$ ]] && [ "$1" -ge "${2:-1}" ]; }
for v in "ROUNDS=$ROUNDS" "DURATION=$DURATION" "WARMUP=$WARMUP" "CEIL_WARMUP=$CEIL_WARMUP" "CEIL_DURATION=$CEIL_DURATION" \
    "C1_DURATION=$C1_DURATION" "CONNECTIONS=$CONNECTIONS" "WRK_THREADS=$WRK_THREADS" \
    "COUNT=$COUNT" "CACHE_BENCH_PORT=$PORT" "REDIS_PORT=$RPORT0"; do
    is_count "${v#*=}" || { say "${v%%=*} must be a positive integer, not '${v#*=}'"; exit 1; }
done
[[ "$ZIPF_S" =~ ^[0-9]+(\.[0-9]+)?$ ]] || { say "ZIPF_S must be a number, not '$ZIPF_S'"; exit 1; }
read -r -a modes <<<"$MODES"
read -r -a models <<<"$MODELS"
[ ${#modes[@]} -gt 0 ] || { say "MODES is empty"; exit 1; }
uses_redis=0
for m in "${modes[@]}"; do
    case "$m" in none | l1 | l1-warm) ;; l1+l2 | l2) uses_redis=1 ;;
        *) say "MODES: unknown mode '$m' (none, l1, l1+l2, l2, l1-warm)"; exit 1 ;; esac
done
for m in "${models[@]}"; do
    case "$m" in digits_cnn | text_classifier) ;;
        *) say "MODELS: unknown model '$m' (digits_cnn, text_classifier)"; exit 1 ;; esac
done
tools=("$WRK" curl "$PYTHON" "$NGINX")
[ $uses_redis -eq 1 ] && tools+=("$REDIS_SERVER" "$REDIS_CLI")
for tool in "${tools[@]}"; do
    command -v "$tool" >/dev/null 2>&1 || { say "$tool not found (make extra-deps)"; exit 1; }
done
[ -x "$DABBA" ] || { say "$DABBA not built (run make)"; exit 1; }
if ! "$DABBA" serve --help 2>&1 | grep -q -- '--cache-size'; then
    say "$DABBA serve has no --cache-size flag: this build has no response cache"
    exit 1
fi
mkdir -p "$RESULTS"
HZ="$(getconf CLK_TCK)"
started="$(date -u '+%Y-%m-%d %H:%M:%S UTC')"
load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
: >"$LOG"
: >"$META"
printf 'round\tmodel\tmode\trps\tp50_ms\tp99_ms\tnon2xx\tsocket_errors\trequests\tserver_cpu_pct' >"$TSV"
printf '\thit_ratio\tlookups\n' >>"$TSV"

# --- the policy study (src/cache/l1.c on its own), first: it needs no server ---
run_policy() {
    local vars cc cflags ldlibs lib="$BINDIR/libdabba.a"
    [ -f "$lib" ] || { say "$lib not built (run make)"; return 1; }
    # the Makefile's own compiler, flags and libraries, as for the unit tests (bin/tests/%)
    # shellcheck disable=SC2016  # $(...) here is make's, not the shell's
    vars="$(printf 'include Makefile\nprint-cache-bench-vars:\n\t@echo "$(CC)|$(CFLAGS)|$(LDLIBS)"\n' |
        make --no-print-directory -s -f - print-cache-bench-vars 2>/dev/null | tail -n 1)"
    IFS='|' read -r cc cflags ldlibs <<<"$vars"
    if [ -z "$cc" ] || [ -z "$cflags" ]; then say "could not read CFLAGS / LDLIBS from the Makefile"; return 1; fi
    say "building bench/cache/policy"
    # shellcheck disable=SC2086  # flag lists
    $cc $cflags "$HERE/policy.c" "$lib" -o "$TMP/policy" $ldlibs || { say "bench/cache/policy.c did not build"; return 1; }
    say "policy study (about 30 s)"
    # shellcheck disable=SC2086
    "$TMP/policy" $POLICY_ARGS >"$TMP/policy.md" 2>"$TMP/policy.err"
    local rc=$?
    {
        echo "## policy study: bench/cache/policy $POLICY_ARGS (rc $rc)"
        cat "$TMP/policy.err"
        echo
    } >>"$LOG"
    if [ $rc -ne 0 ]; then
        say "bench/cache/policy failed (rc $rc): $(tail -n 2 "$TMP/policy.err" | tr '\n' ' ')"
        return 1
    fi
    cp "$TMP/policy.md" "$RESULTS/cache_policy.md"
    cat "$RESULTS/cache_policy.md"
    echo
    say "wrote $RESULTS/cache_policy.md"
}
if [ "$POLICY" = 1 ]; then run_policy || status=1; fi

# --- bodies, repositories, Redis ---
say "generating $COUNT bodies per model"
"$PYTHON" "$HERE/make_bodies.py" "$TMP/bodies" "$COUNT" || { say "make_bodies.py failed"; exit 1; }
while IFS= read -r line; do
    model="${line%%:*}"
    printf 'bodies.%s\t%s\n' "$model" "${line#*: }" >>"$META"
done <"$TMP/bodies/info.txt"

# write_repo MODEL on|off: TMP/repo-on|off-MODEL/MODEL, a copy of the example with the
# response cache enabled or not
write_repo() {
    local model=$1 onoff=$2 dir="$TMP/repo-$2-$1/$1"
    mkdir -p "$dir" || return 1
    cp -r "examples/repository/$model/." "$dir/" || return 1
    "$PYTHON" - "$dir/config.json" "$onoff" <<'EOF' || return 1
import json, os, sys
path, onoff = sys.argv[1], sys.argv[2]
cfg = json.load(open(path)) if os.path.exists(path) else {}
if onoff == "on":
    cfg["response_cache"] = {"enable": True, "ttl_seconds": 3600}
else:
    cfg.pop("response_cache", None)
json.dump(cfg, open(path, "w"), indent=2)
EOF
}
for model in "${models[@]}"; do
    if ! write_repo "$model" on || ! write_repo "$model" off; then say "cannot write repositories under $TMP"; exit 1; fi
done

REDIS_URL=""
if [ $uses_redis -eq 1 ]; then
    p=$RPORT0
    while [ "$p" -lt $((RPORT0 + 50)) ] && ! port_free "$p"; do p=$((p + 1)); done
    port_free "$p" || { say "no free port for Redis in $RPORT0..$((RPORT0 + 49))"; exit 1; }
    setsid "$REDIS_SERVER" --port "$p" --bind 127.0.0.1 --save "" --appendonly no \
        --daemonize no --dir "$TMP" >>"$TMP/redis.log" 2>&1 &
    RPID=$!
    for _ in $(seq 1 100); do
        [ "$("$REDIS_CLI" -p "$p" ping 2>/dev/null)" = PONG ] && break
        sleep 0.1
    done
    if [ "$("$REDIS_CLI" -p "$p" ping 2>/dev/null)" != PONG ]; then
        say "redis-server did not start on port $p: $(tail -n 3 "$TMP/redis.log" | tr '\n' ' ')"
        exit 1
    fi
    RPORT=$p
    REDIS_URL="redis://127.0.0.1:$RPORT/0"
    say "redis-server $("$REDIS_SERVER" --version | awk '{print $3}') on 127.0.0.1:$RPORT"
fi

# dabba_args MODE MODEL: the `dabba serve` flags of a mode (one per line)
dabba_args() {
    local mode=$1 model=$2 onoff=on
    [ "$mode" = none ] && onoff=off
    printf '%s\n' serve --repository "$TMP/repo-$onoff-$model" --http-address 127.0.0.1 --http-port "$PORT"
    case "$mode" in
        l1+l2) printf '%s\n' --redis "$REDIS_URL" ;;
        l2) printf '%s\n' --cache-size 0 --redis "$REDIS_URL" ;;
    esac
}

# start_dabba NAME MODE MODEL LOGLEVEL...: fresh server (cold cache: FLUSHALL first when the
# mode uses Redis), ready when it answers the hottest body
start_dabba() {
    local name=$1 mode=$2 model=$3
    shift 3
    local -a args
    mapfile -t args < <(dabba_args "$mode" "$model")
    if ! port_free "$PORT"; then say "port $PORT is in use"; return 1; fi
    if [ "$mode" = l1+l2 ] || [ "$mode" = l2 ]; then
        [ "$("$REDIS_CLI" -p "$RPORT" FLUSHALL 2>&1)" = OK ] || { say "Redis FLUSHALL failed"; return 1; }
    fi
    rm -rf "$TMP/ready" && mkdir -p "$TMP/ready"
    : >"$TMP/$name.log"
    launch "$name" "$DABBA" "${args[@]}" "$@"
    # a health probe, not an infer: the first infer would put the body into the cache
    local _
    for _ in $(seq 1 600); do
        if ! kill -0 "$SPID" 2>/dev/null; then
            say "$name exited before it was ready: $(tail -n 5 "$TMP/$name.log" | tr '\n' ' ')"
            return 1
        fi
        [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 \
            "http://127.0.0.1:$PORT/v2/models/$model/ready")" = 200 ] && return 0
        sleep 0.1
    done
    say "$name: model $model not ready after 60 s: $(tail -n 5 "$TMP/$name.log" | tr '\n' ' ')"
    return 1
}

# check MODEL MODE WHEN: cache.py check against the reference; logs and says the verdict
check() {
    local model=$1 mode=$2 when=$3 out rc
    out="$("$PYTHON" "$HERE/cache.py" check "http://127.0.0.1:$PORT/v2/models/$model/infer" \
        "$model" "$TMP/bodies/$model.jsonl" "$TMP/ref-$model.json" "$mode" 2>&1)"
    rc=$?
    echo "$when: $out" >>"$LOG"
    [ $rc -eq 0 ] || say "$when: ${out#cache: }"
    return $rc
}

scrape() { curl -s --max-time 10 -o "$1" "http://127.0.0.1:$PORT/metrics" || : >"$1"; }

# wrk_run ROUND MODEL MODE URL CONNS THREADS WARMUP DURATION [LUA]: warm-up, then the recorded
# run; appends a TSV row (hit ratio from /metrics for dabba infer runs)
wrk_run() {
    local round=$1 model=$2 mode=$3 url=$4 c=$5 t=$6 warm=$7 dur=$8 lua=${9:-}
    local out="$TMP/wrk.out" hits="nan nan" parsed rc t0 t1 c0 c1 cpu hr lookups l1h l1m l2h l2m
    local -a script=()
    [ -n "$lua" ] && script=(-s "$lua")
    # zipf.lua's seed: the round's number (the one-connection passes: 1000); warm-ups another
    local seed=1000
    [[ "$round" =~ ^[0-9]+$ ]] && seed=$round
    if [ "$warm" -gt 0 ]; then
        BODY_FILE="$TMP/bodies/$model.jsonl" ZIPF_S="$ZIPF_S" SEED=$((seed + 100)) \
            "$WRK" -t"$t" -c"$c" -d"${warm}s" --timeout 30s "${script[@]}" "$url" >/dev/null 2>&1
    fi
    local infer=0
    [ "${url%/infer}" != "$url" ] && [ "$mode" != nginx ] && infer=1
    [ $infer -eq 1 ] && scrape "$TMP/metrics.before"
    c0="$(session_ticks "$SPID")"
    t0="$(date +%s.%N)"
    BODY_FILE="$TMP/bodies/$model.jsonl" ZIPF_S="$ZIPF_S" SEED="$seed" \
        "$WRK" -t"$t" -c"$c" -d"${dur}s" --timeout 30s --latency "${script[@]}" "$url" >"$out" 2>&1
    rc=$?
    t1="$(date +%s.%N)"
    c1="$(session_ticks "$SPID")"
    if [ $infer -eq 1 ]; then
        scrape "$TMP/metrics.after"
        hits="$("$PYTHON" "$HERE/cache.py" hits "$TMP/metrics.before" "$TMP/metrics.after" "$model")"
        read -r hr lookups l1h l1m l2h l2m <<<"$hits"
        hits="$hr $lookups"
    fi
    cpu="$(awk -v a="$c0" -v b="$c1" -v t0="$t0" -v t1="$t1" -v hz="$HZ" \
        'BEGIN { v = 100 * (b - a) / hz / (t1 - t0); if (v < 0) print "nan"; else printf "%.0f", v }')"
    {
        echo "## round $round: $model $mode, $url, wrk -t$t -c$c (${dur}s after ${warm}s warm-up; server CPU ${cpu}%)"
        cat "$out"
        [ $infer -eq 1 ] && echo "cache lookups in the recorded window: hit ratio $hr," \
            "lookups $lookups (l1 hits $l1h misses $l1m, l2 hits $l2h misses $l2m)"
        echo
    } >>"$LOG"
    parsed="$("$PYTHON" "$HTTP/check.py" wrk "$out")"
    if ! kill -0 "$SPID" 2>/dev/null; then
        say "$model $mode: the server exited during the run; its numbers are dropped"
        parsed="nan nan nan nan nan nan"
        status=1
    elif [ $rc -ne 0 ] || [ -z "$parsed" ] || [ "${parsed%% *}" = nan ]; then
        say "wrk failed on $model $mode (rc $rc): $(tail -n 3 "$out" | tr '\n' ' ')"
        parsed="nan nan nan nan nan nan"
        status=1
    fi
    local rps p50 p99 non2xx sock reqs
    read -r rps p50 p99 non2xx sock reqs <<<"$parsed"
    if [ "$non2xx" != nan ] && [ "$non2xx" -gt 0 ]; then
        say "$model $mode: $non2xx non-2xx answers under load"
        status=1
    fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$model" "$mode" "$rps" "$p50" \
        "$p99" "$non2xx" "$sock" "$reqs" "$cpu" "${hits// /$'\t'}" >>"$TSV"
    say "round $round $model $mode: $rps req/s, p50 $p50 ms, p99 $p99 ms, non-2xx $non2xx," \
        "socket errors $sock, server CPU $cpu%, hit ratio/lookups $hits"
}

nan_row() { printf '%s\t%s\t%s\tnan\tnan\tnan\tnan\tnan\tnan\tnan\tnan\tnan\n' "$@" >>"$TSV"; }

# --- reference answers: the no-cache server, once per model ---
good_models=()
for model in "${models[@]}"; do
    ok=0
    if start_dabba "ref-$model" none "$model" --log-level warn; then
        out="$("$PYTHON" "$HERE/cache.py" check "http://127.0.0.1:$PORT/v2/models/$model/infer" \
            "$model" "$TMP/bodies/$model.jsonl" "$TMP/ref-$model.json" ref 2>&1)" && ok=1
        echo "reference: $out" >>"$LOG"
        say "${out#cache: }"
        # the ceiling's body: dabba's answer to the hottest body, byte for byte
        "$PYTHON" "$HERE/cache.py" body "$TMP/bodies/$model.jsonl" 1 "$TMP/hot-$model.json"
        code="$(curl -s -o "$TMP/answer-$model.json" -w '%{http_code}' --max-time 10 \
            -H 'Content-Type: application/json' --data-binary "@$TMP/hot-$model.json" \
            "http://127.0.0.1:$PORT/v2/models/$model/infer")"
        [ "$code" = 200 ] || { say "$model: the hottest body answered HTTP $code"; ok=0; }
        printf 'response_bytes.%s\t%s\n' "$model" "$(stat -c %s "$TMP/answer-$model.json")" >>"$META"
    fi
    stop_server
    if [ $ok -eq 1 ]; then good_models+=("$model"); else say "$model: no reference answers; left out"; status=1; fi
done

# nginx_start MODEL: the ceiling for MODEL's path, answering dabba's bytes
nginx_start() {
    local model=$1 dir="$TMP/nginx"
    if ! port_free "$NGINX_PORT"; then say "port $NGINX_PORT is in use"; return 1; fi
    rm -rf "$dir" && mkdir -p "$dir"
    cat >"$dir/nginx.conf" <<EOF
# generated by bench/cache/run.sh: the HTTP ceiling, a fixed body as large as dabba's answer
worker_processes $CORES;
daemon off;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000000;
    keepalive_timeout 75s;
    client_body_temp_path $dir/body;
    proxy_temp_path $dir/proxy;
    fastcgi_temp_path $dir/fastcgi;
    uwsgi_temp_path $dir/uwsgi;
    scgi_temp_path $dir/scgi;
    server {
        listen 127.0.0.1:$NGINX_PORT;
        location = /v2/models/$model/infer {
            default_type application/json;
            return 200 '$(cat "$TMP/answer-$model.json")';
        }
    }
}
EOF
    launch nginx "$NGINX" -e "$dir/error.log" -p "$dir" -c "$dir/nginx.conf"
    wait_ready nginx "http://127.0.0.1:$NGINX_PORT/v2/models/$model/infer" "$TMP/hot-$model.json" \
        application/json || return 1
    cmp -s "$TMP/nginx.resp" "$TMP/answer-$model.json" || { say "nginx's body differs from dabba's"; return 1; }
}

# --- the rounds: per model, the modes and nginx in rotating order ---
order=("${modes[@]}" nginx)
for round in $(seq 1 "$ROUNDS"); do
    health_done=0 # the health ceiling runs on the round's first dabba server, after its load
    for mi in "${!good_models[@]}"; do
        model="${good_models[$mi]}"
        url="http://127.0.0.1:$PORT/v2/models/$model/infer"
        for mode in "${order[@]}"; do
            if [ "$mode" = nginx ]; then
                if nginx_start "$model"; then
                    wrk_run "$round" "$model" nginx "http://127.0.0.1:$NGINX_PORT/v2/models/$model/infer" \
                        "$CONNECTIONS" "$WRK_THREADS" "$CEIL_WARMUP" "$CEIL_DURATION" "$HERE/zipf.lua"
                else
                    say "round $round: nginx failed for $model"
                    nan_row "$round" "$model" nginx
                    status=1
                fi
                stop_server
                continue
            fi
            if start_dabba "$mode-$model" "$mode" "$model" --log-level warn &&
                check "$model" "$mode" "round $round $model $mode before the load"; then
                if [ "$mode" = l1-warm ]; then
                    out="$("$PYTHON" "$HERE/cache.py" fill "$url" "$TMP/bodies/$model.jsonl" 2>&1)" || status=1
                    echo "round $round fill $model: $out" >>"$LOG"
                fi
                wrk_run "$round" "$model" "$mode" "$url" "$CONNECTIONS" "$WRK_THREADS" "$WARMUP" \
                    "$DURATION" "$HERE/zipf.lua"
                if kill -0 "$SPID" 2>/dev/null; then
                    check "$model" "$mode" "round $round $model $mode after the load" || status=1
                    if [ $health_done -eq 0 ]; then
                        wrk_run "$round" - health "http://127.0.0.1:$PORT/v2/health/live" \
                            "$CONNECTIONS" "$WRK_THREADS" "$CEIL_WARMUP" "$CEIL_DURATION"
                        health_done=1
                    fi
                fi
            else
                say "round $round: $model $mode failed to start or answered wrongly"
                cat "$TMP/$mode-$model.log" >>"$LOG" 2>/dev/null
                nan_row "$round" "$model" "$mode"
                status=1
            fi
            stop_server
        done
    done
    [ $health_done -eq 1 ] || nan_row "$round" - health
    order=("${order[@]:1}" "${order[0]}")
done

# --- hit vs miss at one connection ---
# c1_run KEY MODEL: wrk -c1 -t1 (1 s unrecorded, C1_DURATION recorded) on the running server;
# KEY's p50, p99, rps and misses to META
c1_run() {
    local key=$1 model=$2 parsed
    wrk_run c1 "$model" "$key" "http://127.0.0.1:$PORT/v2/models/$model/infer" 1 1 1 "$C1_DURATION" \
        "$HERE/zipf.lua"
    parsed="$(tail -n 1 "$TSV")"
    printf 'c1.%s.%s\t%s\n' "$model" "$key" "$(cut -f4- <<<"$parsed" | tr '\t' ' ')" >>"$META"
}
for model in "${good_models[@]}"; do
    # server-side: the access log of a cold L1 (and L2) server under the Zipf load
    logmodes=(l1)
    for m in "${modes[@]}"; do [ "$m" = l2 ] && logmodes+=(l2); done
    for lm in "${logmodes[@]}"; do
        if start_dabba "log-$lm-$model" "$lm" "$model" --log-level info --log-format json &&
            check "$model" "$lm" "c1 $model $lm (logged) before the load"; then
            wrk_run c1 "$model" "log-$lm" "http://127.0.0.1:$PORT/v2/models/$model/infer" 1 1 0 \
                "$C1_DURATION" "$HERE/zipf.lua"
            split="$("$PYTHON" "$HERE/cache.py" logsplit "$TMP/log-$lm-$model.log" "$model")"
            printf 'log.%s.%s\t%s\n' "$model" "$lm" "$split" >>"$META"
            echo "access log split ($model $lm; miss_n p50 hit-l1_n p50 hit-l2_n p50 shared_n p50): $split" >>"$LOG"
            say "$model $lm access log (n, p50 ms of miss, hit-l1, hit-l2, shared): $split"
            check "$model" "$lm" "c1 $model $lm (logged) after the load" || status=1
        else
            say "$model: the logging $lm server failed to start or answered wrongly"
            status=1
        fi
        stop_server
    done
    # client-side: all hits vs no cache
    if start_dabba "allhit-$model" l1 "$model" --log-level warn &&
        check "$model" l1 "c1 $model all-hit before the load"; then
        out="$("$PYTHON" "$HERE/cache.py" fill "http://127.0.0.1:$PORT/v2/models/$model/infer" \
            "$TMP/bodies/$model.jsonl" 2>&1)" || status=1
        echo "fill $model: $out" >>"$LOG"
        say "$model: ${out#cache: }"
        c1_run allhit "$model"
        check "$model" l1 "c1 $model all-hit after the load" || status=1
    else
        say "$model: the all-hit server failed to start or answered wrongly"
        status=1
    fi
    stop_server
    if start_dabba "nocache-$model" none "$model" --log-level warn &&
        check "$model" none "c1 $model no-cache before the load"; then
        c1_run nocache "$model"
        check "$model" none "c1 $model no-cache after the load" || status=1
    else
        say "$model: the no-cache server failed to start or answered wrongly"
        status=1
    fi
    stop_server
done
stop_redis
load_after="$(cut -d' ' -f1-3 /proc/loadavg)"

# --- report ---
{
    printf 'started\t%s\n' "$started"
    printf 'load_before\t%s\n' "$load_before"
    printf 'load_after\t%s\n' "$load_after"
    printf 'cores\t%s\n' "$CORES"
    printf 'cpu\t%s\n' "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
    printf 'rounds\t%s\n' "$ROUNDS"
    printf 'duration\t%s\n' "$DURATION"
    printf 'warmup\t%s\n' "$WARMUP"
    printf 'ceil_warmup\t%s\n' "$CEIL_WARMUP"
    printf 'ceil_duration\t%s\n' "$CEIL_DURATION"
    printf 'c1_duration\t%s\n' "$C1_DURATION"
    printf 'connections\t%s\n' "$CONNECTIONS"
    printf 'wrk_threads\t%s\n' "$WRK_THREADS"
    printf 'modes\t%s\n' "${modes[*]}"
    printf 'models\t%s\n' "${good_models[*]}"
    printf 'count\t%s\n' "$COUNT"
    printf 'zipf_s\t%s\n' "$ZIPF_S"
    printf 'wrk\t%s\n' "$("$WRK" -v 2>&1 | head -n 1 | cut -d' ' -f1-2)"
    printf 'nginx\t%s\n' "$("$NGINX" -v 2>&1 | sed 's/.*: //')"
    [ $uses_redis -eq 1 ] && printf 'redis\t%s\n' "$("$REDIS_SERVER" --version | awk '{print $3}')"
    printf 'dabba\t%s\n' "$DABBA"
    printf 'command\t%s\n' "${BENCH_CACHE_COMMAND:-bench/cache/run.sh}"
} >>"$META"
"$PYTHON" "$HERE/report.py" "$TSV" "$META" >"$RESULTS/cache.md" || status=1
cat "$RESULTS/cache.md"
echo
echo "bench/cache: wrote $RESULTS/cache.md (raw output: $LOG, per run: $TSV)"
exit "$status"
