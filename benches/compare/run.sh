#!/usr/bin/env bash
# tollgate's side-by-side benchmark against nginx and HAProxy.
#
#   benches/compare/run.sh [--only A,B,...] [--repeat N] [--workers 1|2]
#                          [--contestants nginx,haproxy,tollgate] [--duration S]
#                          [--conns N] [--idle N] [--bytes SIZE] [--reloads N]
#                          [--latency] [--label TEXT]
#
# Scenarios (README.md says what each measures): A plain HTTP keep-alive,
# B HTTPS keep-alive (SNI certs), C new TLS 1.3 handshakes (ECDSA), Crsa (RSA),
# D mTLS, E TLS passthrough, F raw TCP bulk (iperf3), G memory per idle TLS
# connection, H config reload under load, I 10,000 SNI hosts (handshakes).
# Default: all of them, every available contestant, 1 repetition (about 8 min).
# --repeat N runs N rounds of every scenario (G in the first only), alternating
# the order of the contestants, and the table shows medians. --latency adds a
# fixed-rate latency run (h2load, 2000 req/s) after each keep-alive measurement
# (CSV only).
#
# The method follows the workplace bench harness (../shared/bench): the proxy
# runs alone on CPU 1 (taskset), the load generator and the backends on CPU 0;
# during each measurement the proxy's CPU time is read from /proc, which gives
# proxy CPU µs per request / handshake / MiB (comparable even when the load
# generator is the bottleneck). Every load command is bounded (`timeout`),
# everything listens on 127.0.0.1, and only processes started here are stopped,
# by PID.
#
# It installs what is missing from Debian (apt-get, only then), generates its
# certificates (openssl; scenario I's with the bench-tool example), builds
# tollgate (`cargo build --release`) unless TOLLGATE_BIN is set, and prints one
# Markdown table; raw outputs go to benches/compare/results/<time>/.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")" || exit 1
source ./lib.sh

SCENARIOS=$ALL_SCENARIOS
CONTESTANTS=""
WORKERS=1
DURATION=10        # s, each throughput measurement (after a 2 s warm-up)
LATENCY=0          # 1: fixed-rate latency run after A, B, D, E (h2load)
LAT_DURATION=10
LAT_RATE=2000
CONNS=50           # wrk / handshake client connections
IDLE_CONNS=9000    # scenario G (HAProxy needs 2 fds per conn; keep under the fd limit / 2)
F_BYTES=8G         # scenario F, bytes per transfer
RELOADS=100        # scenario H
RELOAD_INTERVAL=0.15 # s between two reloads (tollgate's debounce is 40 ms)
REPEAT=1
LABEL=""
# Scenarios whose measurement is not written yet print "not implemented yet".
NOT_IMPLEMENTED=""

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit "${1:-0}"; }
while (($#)); do
    case $1 in
        --only) SCENARIOS=${2//,/ }; shift ;;
        --contestants | --contestant) CONTESTANTS=${2//,/ }; shift ;;
        --workers) WORKERS=$2; shift ;;
        --duration) DURATION=$2; shift ;;
        --conns) CONNS=$2; shift ;;
        --idle) IDLE_CONNS=$2; shift ;;
        --bytes) F_BYTES=$2; shift ;;
        --reloads) RELOADS=$2; shift ;;
        --repeat) REPEAT=$2; shift ;;
        --latency) LATENCY=1 ;;
        --label) LABEL=-$2; shift ;;
        -h | --help) usage ;;
        *) echo "unknown option $1" >&2; usage 1 ;;
    esac
    shift
done
export WORKERS
for sc in $SCENARIOS; do [[ " $ALL_SCENARIOS " == *" $sc "* ]] || die "unknown scenario $sc"; done
[[ $WORKERS =~ ^[12]$ ]] || die "--workers is 1 or 2"
[[ $REPEAT =~ ^[1-9][0-9]*$ ]] || die "--repeat wants a positive number"
(($(nproc) >= 2)) || die "needs 2 CPUs (proxy on one, load generator on the other)"
PROXY_CPUS=$PROXY_CPU
((WORKERS > 1)) && PROXY_CPUS="$LOADGEN_CPU,$PROXY_CPU"

# ---- setup (idempotent) ----------------------------------------------------------
ensure_packages
ensure_hosts
ensure_clientcert_shim
ensure_certs
TARGET_DIR=${CARGO_TARGET_DIR:-$REPO_DIR/target}
BENCH_TOOL=$TARGET_DIR/release/examples/bench-tool
build=(--example bench-tool)
if [[ -z ${TOLLGATE_BIN:-} ]]; then
    export TOLLGATE_BIN=$TARGET_DIR/release/tollgate
    build+=(--bin tollgate)
fi
log "cargo build --release ${build[*]}"
(cd "$REPO_DIR" && timeout 1800 nice -n 10 cargo build --release --quiet "${build[@]}") || die "cargo build failed"
[[ " $SCENARIOS " == *" I "* ]] && ensure_sni_certs "$BENCH_TOOL"
ulimit -n "$(ulimit -Hn)" # G holds thousands of connections; everything started here inherits this
(($(ulimit -n) >= 2 * IDLE_CONNS + 200)) || die "G needs $((2 * IDLE_CONNS + 200)) fds (ulimit -Hn is $(ulimit -Hn)); use --idle"

# Contestants: the named ones, or every available one (nginx, haproxy, tollgate).
if [[ -z $CONTESTANTS ]]; then
    for c in nginx haproxy tollgate; do
        if why=$( (source "contestants/$c.sh"; c_available) 2>&1); then CONTESTANTS+=" $c"; else log "skipping $c: $why"; fi
    done
fi
for c in $CONTESTANTS; do
    [[ -f contestants/$c.sh ]] || die "no contestants/$c.sh"
    why=$( (source "contestants/$c.sh"; c_available) 2>&1) || die "$c: $why"
done
CONTESTANTS=$(echo $CONTESTANTS)

RESULTS=results/$(date -u +%Y%m%d-%H%M%S)-w$WORKERS$LABEL
RAW=$RESULTS/raw
CSV=$RESULTS/results.csv
mkdir -p "$RAW"
rm -rf "$RUN_DIR" && mkdir -p "$RUN_DIR"
trap 'stop_all' EXIT
trap 'exit 130' INT TERM

{
    echo "date: $(date -u +%FT%TZ)"
    echo "command: benches/compare/run.sh --only ${SCENARIOS// /,} --contestants ${CONTESTANTS// /,} --workers $WORKERS --repeat $REPEAT --duration $DURATION --conns $CONNS --idle $IDLE_CONNS --bytes $F_BYTES --reloads $RELOADS"
    echo "host: $(uname -sr), $(nproc) CPUs, $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)"
    echo "placement: proxy on CPU $PROXY_CPUS; load generator + backends on CPU $LOADGEN_CPU"
    for c in $CONTESTANTS; do echo "contestant $c: $( (source "contestants/$c.sh"; c_version) 2>&1)"; done
    echo "tollgate binary: $TOLLGATE_BIN"
    echo "backend: $(nginx -v 2>&1 | sed 's/.*: //') (1 worker, return 200, 64-byte body)"
    echo "wrk: $(wrk -v 2>&1 | head -1 | awk '{print $2}'); h2load: $(h2load --version | awk '{print $2}'); iperf3: $(iperf3 --version | head -1 | awk '{print $2}'); $(openssl version)"
} >"$RESULTS/env.txt"
cat "$RESULTS/env.txt" >&2

echo "scenario,contestant,rep,rate,rate_unit,cost,cost_unit,errors,proxy_cpu_pct,cpu0_pct,cpu1_pct,p50_ms,p99_ms,proxy_rss_kib,note,proxy_user_pct" >"$CSV"
# row SC C RATE RATE_UNIT COST COST_UNIT ERRORS CPU% CPU0 CPU1 P50 P99 RSS NOTE [USER%]
row() {
    local f=("$@")
    f[13]=${f[13]//,/;} # the note is free text
    f[14]=${f[14]:-}
    local IFS=,
    echo "${f[0]},${f[1]},$REP,${f[*]:2}" >>"$CSV"
}
fail_row() { row "$1" "$2" "" "" "" "" "" "" "" "" "" "" "" "$3"; log "$1/$2: $3"; }

# ---- proxy lifecycle ---------------------------------------------------------
PROXY_PID=
UP_SECS=
start_proxy() { # CONTESTANT SCENARIO DIR
    mkdir -p "$3"
    (
        taskset -pc "$PROXY_CPUS" "$BASHPID" >/dev/null
        source "contestants/$1.sh"
        c_start "$2" "$3"
    ) >"$3/proxy.log" 2>&1 &
    PROXY_PID=$!
    STARTED_PIDS+=("$PROXY_PID")
}

# proxy_listening PORT SECONDS: wait for the port; give up at once if the proxy exited.
proxy_listening() {
    local i
    for ((i = 0; i < $2 * 10; i++)); do
        port_listening "$1" && return 0
        kill -0 "$PROXY_PID" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

# ---- correctness checks (a failed check skips the measurement) --------------
curl_code() { curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$@" 2>/dev/null; }
curl_tls() { curl_code --cacert "$CERTS/ca.crt" "$@"; }
# server_key_bits HOST PORT: key size of the certificate the server presents for SNI HOST
server_key_bits() {
    timeout 5 openssl s_client -connect "$LISTEN_ADDR:$2" -servername "$1" -tls1_3 </dev/null 2>/dev/null |
        awk '/Server public key is/ { print $5 }'
}

check() { # SCENARIO CONTESTANT -> prints a problem, empty if fine
    local sc=$1 port h code bits want
    port=$(scenario_port "$sc")
    case $sc in
        A)
            code=$(curl_code -H "Host: $HOST_B" "http://$LISTEN_ADDR:$port/")
            [[ $code == 200 ]] || { echo "Host $HOST_B got $code, want 200"; return; }
            curl -s -D - -o /dev/null --max-time 5 -H "Host: $HOST_A" "http://$LISTEN_ADDR:$port/" |
                grep -qi '^x-backend: http' || { echo "response did not come from the HTTP backend"; return; }
            code=$(curl_code -H "Host: unknown.bench.test" "http://$LISTEN_ADDR:$port/")
            [[ $code == 404 ]] || echo "unknown Host got $code, want 404"
            ;;
        B | C | Crsa | D | G | H)
            local cert=()
            [[ $sc == D ]] && cert=(--cert "$CERTS/client.crt" --key "$CERTS/client.key")
            want=256; [[ $sc == Crsa ]] && want=2048
            for h in "$HOST_A" "$HOST_B"; do
                # curl verifies the name, so a 200 proves SNI picked this host's cert
                code=$(curl_tls "${cert[@]}" "https://$h:$port/")
                [[ $code == 200 ]] || { echo "https://$h:$port/ got $code, want 200"; return; }
                bits=$(server_key_bits "$h" "$port")
                [[ $bits == "$want" ]] || { echo "SNI $h: server key is ${bits:-?} bit, want $want"; return; }
            done
            code=$(curl_tls "${cert[@]}" --tls-max 1.2 "https://$HOST_A:$port/")
            [[ $code == 000 ]] || { echo "TLS 1.2 was accepted"; return; }
            if [[ $sc == D ]]; then
                code=$(curl_tls "https://$HOST_A:$port/")
                [[ $code != 200 ]] || echo "request without client cert got 200"
            fi
            ;;
        E)
            code=$(curl_tls "https://$HOST_B:$port/")
            [[ $code == 200 ]] || { echo "https://$HOST_B:$port/ got $code, want 200"; return; }
            curl -s -D - -o /dev/null --max-time 5 --cacert "$CERTS/ca.crt" "https://$HOST_A:$port/" |
                grep -qi '^x-backend: tls' || echo "response did not come from the TLS backend"
            ;;
        F)
            lg 20 iperf3 -c "$LISTEN_ADDR" -p "$port" -n 10M >"$RAW/F-check.txt" 2>&1 ||
                echo "iperf3 through the proxy failed (see raw/F-check.txt)"
            ;;
        I)
            local i
            for i in 0 $((SNI_HOSTS / 2)) $((SNI_HOSTS - 1)); do
                h=h$i.$SNI_DOMAIN
                code=$(curl_code --cacert "$SNI_DIR/ca.crt" --resolve "$h:$port:$LISTEN_ADDR" "https://$h:$port/")
                [[ $code == 200 ]] || { echo "https://$h:$port/ got $code, want 200 (certificate of $h)"; return; }
            done
            code=$(curl_code --cacert "$SNI_DIR/ca.crt" --tls-max 1.2 --resolve "h0.$SNI_DOMAIN:$port:$LISTEN_ADDR" "https://h0.$SNI_DOMAIN:$port/")
            [[ $code == 000 ]] || echo "TLS 1.2 was accepted"
            ;;
    esac
}

# ---- measurements ------------------------------------------------------------
# proxy_cost TICKS T0 T1 N -> "cpu% µs_per_unit"
proxy_cost() {
    awk -v c="$1" -v hz="$CLK_TCK" -v t0="$2" -v t1="$3" -v n="$4" \
        'BEGIN { s = c / hz; printf "%.0f %.1f\n", 100 * s / (t1 - t0), n ? 1e6 * s / n : 0 }'
}

# measure_http SC C URL [wrk extra args...]: wrk (keep-alive) or the handshake client (C, Crsa, I)
measure_http() {
    local sc=$1 c=$2 url=$3
    shift 3
    local extra=("$@") pre=() port t0 t1 s0 s1 c0 c1 u0 u1 user rps req p50 p99 err cpu cpuus cpus
    port=$(scenario_port "$sc")
    [[ $sc == D ]] && pre=(env "LD_PRELOAD=$BUILD_DIR/clientcert.so"
        "BENCH_CLIENT_CERT=$CERTS/client.crt" "BENCH_CLIENT_KEY=$CERTS/client.key")
    local hs=0 out=$RAW/$sc-$c-r$REP.wrk.txt rate_unit=req/s cost_unit=µs/req note=""
    local hsload=("$BENCH_TOOL" hsload --addr "$LISTEN_ADDR:$port" --conns "$CONNS")
    if [[ $sc == C* || $sc == I ]]; then
        hs=1 out=$RAW/$sc-$c-r$REP.hsload.txt rate_unit=handshakes/s cost_unit=µs/handshake
        if [[ $sc == I ]]; then hsload+=(--sni-file "$SNI_DIR/names.txt"); else hsload+=(--sni "$HOST_A"); fi
    fi
    if ((hs)); then # warm-up, then the measurement
        lg 30 "${hsload[@]}" --duration 2 >/dev/null 2>&1
    else
        lg 30 "${pre[@]}" wrk -t1 -c "$CONNS" -d 2s "${extra[@]}" "$url" >/dev/null 2>&1
    fi
    read -r c0 u0 < <(cpu_ticks "$PROXY_PID"); s0=$(cpu_snapshot); t0=$(now_s)
    if ((hs)); then
        lg $((DURATION + 30)) "${hsload[@]}" --duration "$DURATION" >"$out" 2>&1
    else
        lg $((DURATION + 30)) "${pre[@]}" wrk -t1 -c "$CONNS" -d "${DURATION}s" --latency "${extra[@]}" "$url" >"$out" 2>&1
    fi
    read -r c1 u1 < <(cpu_ticks "$PROXY_PID"); s1=$(cpu_snapshot); t1=$(now_s)
    if ((hs)); then
        read -r rps req p50 p99 err < <(parse_hsload "$out")
    else
        read -r rps req p50 p99 err < <(parse_wrk "$out")
    fi
    ((req > 0)) || { fail_row "$sc" "$c" "no successful request (raw/$(basename "$out"))"; return; }
    read -r cpu cpuus < <(proxy_cost $((c1 - c0)) "$t0" "$t1" "$req")
    cpus=$(cpu_delta "$s0" "$s1")
    user=$(user_pct $((u1 - u0)) $((c1 - c0)))
    if ((LATENCY)) && [[ $sc =~ ^(A|B|D|E)$ ]]; then
        local log=$RAW/$sc-$c-r$REP.h2load.log
        lg $((LAT_DURATION + 30)) "${pre[@]}" h2load --h1 -t1 -c 10 --rps $((LAT_RATE / 10)) -D "$LAT_DURATION" \
            --connect-to "$LISTEN_ADDR:$port" --log-file "$log" "$url" >"$RAW/$sc-$c-r$REP.h2load.txt" 2>&1
        note=$(sort -t$'\t' -k3,3n "$log" | awk -F'\t' '{ v[NR] = $3 }
            function pct(p,  i) { i = int(NR * p + 0.999999); if (i < 1) i = 1; return v[i] / 1000 }
            END { if (NR) printf "at %d req/s p50 %.3f ms p99 %.3f ms", NR / '"$LAT_DURATION"', pct(0.5), pct(0.99) }')
    fi
    [[ $sc == I ]] && note="listening $UP_SECS s after start"
    row "$sc" "$c" "$rps" "$rate_unit" "$cpuus" "$cost_unit" "$err" "$cpu" ${cpus} "$p50" "$p99" "$(rss_kib "$PROXY_PID")" "$note" "$user"
    log "$sc/$c: $rps $rate_unit, proxy CPU ${cpu}% ($cpuus $cost_unit, $user% in user space), errors $err"
}

measure_F() { # bulk TCP through the proxy with iperf3 (single stream)
    local c=$1 c0 c1 u0 u1 s0 s1 t0 t1 mib secs rate cpu cpuus cpus
    local out=$RAW/F-$c-r$REP.json
    read -r c0 u0 < <(cpu_ticks "$PROXY_PID"); s0=$(cpu_snapshot); t0=$(now_s)
    lg 120 iperf3 -c "$LISTEN_ADDR" -p "$PORT_F" -n "$F_BYTES" -l 128K -J >"$out" 2>&1
    read -r c1 u1 < <(cpu_ticks "$PROXY_PID"); s1=$(cpu_snapshot); t1=$(now_s)
    read -r mib secs < <(python3 -c 'import json,sys; e=json.load(open(sys.argv[1]))["end"]["sum_received"]; print(e["bytes"]/1048576, e["seconds"])' "$out" 2>/dev/null)
    [[ -n ${mib:-} ]] || { fail_row F "$c" "iperf3 failed (raw/F-$c-r$REP.json)"; return; }
    read -r rate cpu cpuus < <(awk -v m="$mib" -v s="$secs" -v c=$((c1 - c0)) -v hz="$CLK_TCK" -v t0="$t0" -v t1="$t1" \
        'BEGIN { printf "%.0f %.0f %.1f\n", m / s, 100 * c / hz / (t1 - t0), 1e6 * c / hz / m }')
    cpus=$(cpu_delta "$s0" "$s1")
    row F "$c" "$rate" MiB/s "$cpuus" µs/MiB 0 "$cpu" $cpus "" "" "$(rss_kib "$PROXY_PID")" "$F_BYTES in $(printf %.2f "$secs") s" "$(user_pct $((u1 - u0)) $((c1 - c0)))"
    log "F/$c: $rate MiB/s, proxy CPU ${cpu}% ($cpuus µs/MiB)"
}

measure_G() { # idle TLS connections: proxy RSS growth per connection
    local c=$1 r0 r1 ok failed pid i
    local out=$RAW/G-$c-r$REP.txt
    sleep 0.5
    r0=$(rss_kib "$PROXY_PID")
    echo "taskset -c $LOADGEN_CPU python3 tools/idle_conns.py --port $PORT_B --sni $HOST_A --tls --cafile $CERTS/ca.crt -n $IDLE_CONNS --hold 150" >>"$RAW/commands.log"
    start_bg "$out" "$LOADGEN_CPU" timeout 300 python3 tools/idle_conns.py --port "$PORT_B" --sni "$HOST_A" --tls \
        --cafile "$CERTS/ca.crt" -n "$IDLE_CONNS" --hold 150
    pid=$LAST_PID
    for ((i = 0; i < 1500; i++)); do grep -q '^READY' "$out" && break; kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    sleep 2 # let the proxy settle
    r1=$(rss_kib "$PROXY_PID")
    stop_pid "$pid"
    ok=$(sed -n 's/^READY ok=\([0-9]*\).*/\1/p' "$out"); failed=$(sed -n 's/^READY.* failed=\([0-9]*\).*/\1/p' "$out")
    [[ -n $ok && $ok -gt 0 ]] || { fail_row G "$c" "idle client did not get ready (raw/G-$c-r$REP.txt)"; return; }
    local kib
    kib=$(awk -v a="$r0" -v b="$r1" -v n="$ok" 'BEGIN { printf "%.1f\n", (b - a) / n }')
    row G "$c" "$ok" "idle conns" "$kib" KiB/conn "$failed" "" "" "" "" "" "$r1" "RSS $r0 -> $r1 KiB"
    log "G/$c: $kib KiB/conn over $ok idle TLS connections (RSS $r0 -> $r1 KiB), $failed failed"
}

# measure_H C DIR: B-style keep-alive load (wrk) while the proxy reloads its
# config RELOADS times; errors must be 0.
measure_H() {
    local c=$1 dir=$2 url="https://$HOST_A:$PORT_H/" out=$RAW/H-$c-r$REP.wrk.txt
    local secs n0 n1 c0 c1 u0 u1 s0 s1 t0 t1 wpid i rps req p50 p99 err cpu cpuus cpus done_reloads note
    secs=$(awk -v n="$RELOADS" -v d="$RELOAD_INTERVAL" 'BEGIN { printf "%d\n", n * d + 3.999 }')
    lg 30 wrk -t1 -c "$CONNS" -d 2s "$url" >/dev/null 2>&1 # warm-up
    n0=$( (source "contestants/$c.sh"; c_reload_count "$dir" "$PROXY_PID") 2>/dev/null)
    read -r c0 u0 < <(cpu_ticks "$PROXY_PID"); s0=$(cpu_snapshot); t0=$(now_s)
    { printf 'taskset -c %s timeout %s' "$LOADGEN_CPU" $((secs + 30)); printf ' %q' wrk -t1 -c "$CONNS" -d "${secs}s" --latency "$url"; echo; } >>"$RAW/commands.log"
    taskset -c "$LOADGEN_CPU" timeout $((secs + 30)) wrk -t1 -c "$CONNS" -d "${secs}s" --latency "$url" >"$out" 2>&1 &
    wpid=$!
    sleep 1
    for ((i = 1; i <= RELOADS; i++)); do
        (source "contestants/$c.sh"; c_reload "$dir" "$PROXY_PID" "$i") || { log "H/$c: reload $i failed"; break; }
        sleep "$RELOAD_INTERVAL"
    done
    wait "$wpid"
    read -r c1 u1 < <(cpu_ticks "$PROXY_PID"); s1=$(cpu_snapshot); t1=$(now_s)
    sleep 1
    n1=$( (source "contestants/$c.sh"; c_reload_count "$dir" "$PROXY_PID") 2>/dev/null)
    read -r rps req p50 p99 err < <(parse_wrk "$out")
    ((req > 0)) || { fail_row H "$c" "no successful request (raw/H-$c-r$REP.wrk.txt)"; return; }
    read -r cpu cpuus < <(proxy_cost $((c1 - c0)) "$t0" "$t1" "$req")
    cpus=$(cpu_delta "$s0" "$s1")
    [[ $n0 =~ ^[0-9]+$ && $n1 =~ ^[0-9]+$ ]] || n0=0 n1="?"
    done_reloads=$([[ $n1 == "?" ]] && echo "?" || echo $((n1 - n0)))
    note="$done_reloads/$((i > RELOADS ? RELOADS : i)) reloads done"
    if [[ $c == tollgate ]]; then # the last revision must be in force
        curl -s -D - -o /dev/null --max-time 5 --cacert "$CERTS/ca.crt" "$url" | grep -qi "^x-bench-revision: $RELOADS" ||
            note+="; LAST REVISION NOT SERVED"
    fi
    row H "$c" "$rps" req/s "$cpuus" µs/req "$err" "$cpu" $cpus "$p50" "$p99" "$(rss_kib "$PROXY_PID")" "$note" "$(user_pct $((u1 - u0)) $((c1 - c0)))"
    log "H/$c: $rps req/s, proxy CPU ${cpu}% ($cpuus µs/req), errors $err, $note"
}

run_one() { # SCENARIO CONTESTANT
    local sc=$1 c=$2 base=$1 dir problem port wait_s=10 t0
    [[ $sc == G ]] && base=B
    if [[ " $NOT_IMPLEMENTED " == *" $sc "* ]]; then fail_row "$sc" "$c" "not implemented yet"; return; fi
    if ! (source "contestants/$c.sh"; c_supports "$base"); then fail_row "$sc" "$c" "n/a"; return; fi
    port=$(scenario_port "$sc")
    if port_listening "$port"; then fail_row "$sc" "$c" "port $port is already in use"; return; fi
    [[ $sc == I ]] && wait_s=120 # 10,000 certificates to load
    dir=$RUN_DIR/$c-$sc
    rm -rf "$dir"
    t0=$(now_s)
    start_proxy "$c" "$base" "$dir"
    if ! proxy_listening "$port" "$wait_s"; then
        fail_row "$sc" "$c" "proxy did not listen on $port: $(tail -1 "$dir/proxy.log" 2>/dev/null) (raw/$sc-$c-r$REP.proxy.log)"
        cp "$dir/proxy.log" "$RAW/$sc-$c-r$REP.proxy.log" 2>/dev/null
        stop_pid "$PROXY_PID"; return
    fi
    UP_SECS=$(awk -v a="$t0" -v b="$(now_s)" 'BEGIN { printf "%.1f", b - a }')
    problem=$(check "$sc")
    if [[ -n $problem ]]; then
        fail_row "$sc" "$c" "CHECK FAILED: $problem"
    else
        case $sc in
            A) measure_http A "$c" "http://$HOST_A:$PORT_A/" ;;
            B) measure_http B "$c" "https://$HOST_A:$PORT_B/" ;;
            C | Crsa | I) measure_http "$sc" "$c" "" ;;
            D) measure_http D "$c" "https://$HOST_A:$PORT_D/" ;;
            E) measure_http E "$c" "https://$HOST_A:$PORT_E/" ;;
            F) measure_F "$c" ;;
            G) measure_G "$c" ;;
            H) measure_H "$c" "$dir" ;;
        esac
    fi
    stop_pid "$PROXY_PID"
    cp "$dir/proxy.log" "$RAW/$sc-$c-r$REP.proxy.log" 2>/dev/null
    for f in "$dir"/*.conf "$dir"/*.cfg "$dir"/error.log; do [[ -f $f ]] && cp "$f" "$RAW/$sc-$c-r$REP.$(basename "$f")"; done
    [[ -d $dir/config && $sc != I ]] && cp -r "$dir/config" "$RAW/$sc-$c-r$REP.config"
    true
}

# ---- report: one Markdown table ---------------------------------------------------
summary_table() {
    awk -F, -v order="$CONTESTANTS" -v scs="$SCENARIOS" -v hosts="$SNI_HOSTS" '
        function median(a, m,   i, j, t) { # sorts a[1..m] numerically, returns the median
            for (i = 2; i <= m; i++) for (j = i; j > 1 && a[j - 1] + 0 > a[j] + 0; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
            return m % 2 ? a[(m + 1) / 2] : (a[m / 2] + a[m / 2 + 1]) / 2 }
        function num(v,   s) { # thousands separators for rates
            v = sprintf("%.0f", v); s = ""
            while (length(v) > 3) { s = "," substr(v, length(v) - 2) s; v = substr(v, 1, length(v) - 3) }
            return v s }
        NR == 1 { next }
        { k = $1 SUBSEP $2
          if ($6 != "") { m = ++cnt[k]; rate[k, m] = $4; cost[k, m] = $6; err[k] += $8; rss[k, m] = $14
                          runit[$1] = $5; cunit[$1] = $7; if ($15 != "") note[k] = $15 }
          else note[k] = $15 }
        END {
            nc = split(order, cs, " "); ns = split(scs, ss, " ")
            names["A"] = "A plain HTTP keep-alive"; names["B"] = "B HTTPS keep-alive, SNI certs"
            names["C"] = "C new TLS 1.3 handshakes (ECDSA)"; names["Crsa"] = "Crsa new TLS 1.3 handshakes (RSA-2048)"
            names["D"] = "D mTLS keep-alive"; names["E"] = "E TLS passthrough"; names["F"] = "F raw TCP bulk (iperf3)"
            names["G"] = "G memory per idle TLS connection"; names["H"] = "H config reload under load"
            names["I"] = "I " hosts " SNI hosts, new handshakes"
            printf "| Scenario |"; for (j = 1; j <= nc; j++) printf " %s |", cs[j]; print " tollgate ÷ best peer (cost) |"
            printf "|---|"; for (j = 1; j <= nc; j++) printf "---|"; print "---|"
            for (i = 1; i <= ns; i++) {
                s = ss[i]; best = ""; tg = ""
                printf "| %s |", names[s]
                for (j = 1; j <= nc; j++) {
                    k = s SUBSEP cs[j]; m = cnt[k]
                    if (!m) { printf " %s |", (k in note) ? note[k] : "not run"; continue }
                    delete v; delete u; delete r
                    for (x = 1; x <= m; x++) { v[x] = rate[k, x]; u[x] = cost[k, x]; r[x] = rss[k, x] }
                    c = sprintf("%.1f", median(u, m))
                    if (s == "G") cell = c " " cunit[s]
                    else cell = num(median(v, m)) " " runit[s] " · " c " " cunit[s]
                    if (s == "H") cell = cell " · " err[k] " errors · " note[k]
                    else if (err[k] > 0) cell = cell " · " err[k] " errors"
                    if (s == "I") cell = cell " · RSS " sprintf("%.0f", median(r, m) / 1024) " MiB · " note[k]
                    if (m > 1) cell = cell " (median of " m ")"
                    printf " %s |", cell
                    if (cs[j] == "tollgate") tg = c
                    else if (best == "" || c + 0 < best + 0) best = c
                    medcost[s, cs[j]] = c
                }
                ratio = (tg != "" && best != "" && best + 0 > 0) ? sprintf("%.2f", tg / best) : "n/a"
                if (s == "I" && (("C", "tollgate") in medcost) && tg != "")
                    ratio = ratio "; tollgate I ÷ C = " sprintf("%.2f", tg / medcost["C", "tollgate"])
                print " " ratio " |"
            }
        }' "$CSV"
}

# ---- main ----------------------------------------------------------------------
backend_nginx_start "$LOADGEN_CPU"
[[ " $SCENARIOS " == *" F "* ]] && sink_start "$LOADGEN_CPU"
REVERSED=$(echo "$CONTESTANTS" | tr ' ' '\n' | tac | tr '\n' ' ')
# Rounds, not scenario after scenario: each round measures every scenario once,
# so the machine's slow drift over a long run spreads over all of them alike.
# I runs right after C in each round, since the issue compares the two.
ROUND_ORDER=$(for sc in $SCENARIOS; do
    [[ $sc == I ]] && continue
    echo "$sc"
    [[ $sc == C && " $SCENARIOS " == *" I "* ]] && echo I
done | tr '\n' ' ')
[[ " $SCENARIOS " == *" I "* && " $SCENARIOS " != *" C "* ]] && ROUND_ORDER="$ROUND_ORDER I"
for ((REP = 1; REP <= REPEAT; REP++)); do
    order=$CONTESTANTS
    ((REP % 2 == 0)) && order=$REVERSED # ABBA order cancels slow drift
    for sc in $ROUND_ORDER; do
        [[ $sc == G ]] && ((REP > 1)) && continue # memory per connection: once is enough
        for c in $order; do
            log "== scenario $sc, contestant $c (workers $WORKERS, round $REP/$REPEAT)"
            run_one "$sc" "$c"
        done
    done
done
backends_stop
{
    echo "# benches/compare $(basename "$RESULTS")"
    echo
    sed 's/^/    /' "$RESULTS/env.txt"
    echo
    echo "Per scenario and contestant: rate · proxy CPU cost per unit (one core), medians over repetitions."
    echo
    summary_table
} >"$RESULTS/summary.md"
log "results: $RESULTS/ (summary.md, results.csv, env.txt, raw/)"
summary_table
