# shellcheck shell=bash
# Shell functions shared by the HTTP benchmarks (bench/http/run.sh, bench/batch/run.sh):
# start one server in its own session, wait until it answers, measure its CPU, stop it.
# Sourced, not run. The caller sets TMP (a scratch folder; server logs go to $TMP/NAME.log,
# per-worker ready files to $TMP/ready) and SPID="" and defines say() (one line to stderr);
# these functions keep the running server's process (and session) id in SPID.

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
