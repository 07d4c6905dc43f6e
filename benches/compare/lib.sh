# Shared settings and helpers of benches/compare (sourced by run.sh and the
# contestant files). Adapted from the workplace bench harness (its lib.sh,
# backends.sh and setup.sh); the method is the same. Every value below can be
# overridden from the environment. The ports differ from that harness's so the
# two can coexist on one machine.

COMPARE_DIR=${COMPARE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)}
REPO_DIR=${REPO_DIR:-$(cd "$COMPARE_DIR/../.." && pwd)}
CERTS=${CERTS:-$COMPARE_DIR/certs}          # generated: CA, server and client certs
BUILD_DIR=${BUILD_DIR:-$COMPARE_DIR/build}  # generated: clientcert.so
RUN_DIR=${RUN_DIR:-$COMPARE_DIR/run}        # generated configs and logs of the current run
SNI_DIR=${SNI_DIR:-$COMPARE_DIR/sni-certs}  # generated: scenario I's 10,000 certificates
export COMPARE_DIR REPO_DIR CERTS BUILD_DIR RUN_DIR SNI_DIR

# Host names (run.sh maps them to 127.0.0.1 in /etc/hosts: wrk resolves the
# URL's host and sends it as SNI). Scenario I uses h<i>.$SNI_DOMAIN, resolved by
# nobody (the handshake client connects to 127.0.0.1 and only sends the name).
export HOST_A=${HOST_A:-a.bench.test}
export HOST_B=${HOST_B:-b.bench.test}
export SNI_DOMAIN=${SNI_DOMAIN:-i.bench.test}
export SNI_HOSTS=${SNI_HOSTS:-10000}

# Everything listens on loopback only.
export LISTEN_ADDR=127.0.0.1

# Backends (started by run.sh, never by a contestant).
export BACKEND_HTTP_PORT=${BACKEND_HTTP_PORT:-19080}  # HTTP/1.1, `return 200` + X-Backend: http
export BACKEND_TLS_PORT=${BACKEND_TLS_PORT:-19443}    # TLS 1.3 (ECDSA certs for a/b), X-Backend: tls
export SINK_PORT=${SINK_PORT:-19201}                  # iperf3 server (raw TCP sink)

# Proxy listen port per scenario.
export PORT_A=${PORT_A:-29080}       # A    HTTP reverse proxy, Host-based route
export PORT_B=${PORT_B:-29443}       # B,G  HTTPS termination, SNI -> ECDSA cert a or b
export PORT_C=${PORT_C:-29444}       # C    HTTPS, new TLS connection per request (ECDSA)
export PORT_CRSA=${PORT_CRSA:-29445} # Crsa same with RSA-2048 certs
export PORT_D=${PORT_D:-29446}       # D    mTLS termination (client cert required)
export PORT_E=${PORT_E:-29447}       # E    TLS passthrough routed by SNI
export PORT_F=${PORT_F:-29500}       # F    raw TCP forward to the sink
export PORT_H=${PORT_H:-29448}       # H    as B, while the config is reloaded 100 times
export PORT_I=${PORT_I:-29449}       # I    HTTPS with SNI_HOSTS hosts, one certificate each
# tollgate's own side ports (admin, health, metrics), loopback only.
export TG_ADMIN_PORT=${TG_ADMIN_PORT:-25000}
export TG_HEALTH_PORT=${TG_HEALTH_PORT:-25021}
export TG_METRICS_PORT=${TG_METRICS_PORT:-25090}

# CPU placement: proxy alone on one core, load generator + backends on the other.
export LOADGEN_CPU=${LOADGEN_CPU:-0}
export PROXY_CPU=${PROXY_CPU:-1}

ALL_SCENARIOS="A B C Crsa D E F G H I"

# Port a scenario's proxy listens on (G reuses B's listener).
scenario_port() {
    case $1 in
        A) echo "$PORT_A" ;; B | G) echo "$PORT_B" ;; C) echo "$PORT_C" ;;
        Crsa) echo "$PORT_CRSA" ;; D) echo "$PORT_D" ;; E) echo "$PORT_E" ;;
        F) echo "$PORT_F" ;; H) echo "$PORT_H" ;; I) echo "$PORT_I" ;; *) return 1 ;;
    esac
}

log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ---- processes we start (tracked by PID, stopped by PID only) --------------
STARTED_PIDS=()

# start_bg LOGFILE CPUS CMD... : run CMD pinned to CPUS in the background; sets LAST_PID.
start_bg() {
    local logf=$1 cpus=$2
    shift 2
    taskset -c "$cpus" "$@" >"$logf" 2>&1 &
    LAST_PID=$!
    STARTED_PIDS+=("$LAST_PID")
}

# stop_pid PID : SIGTERM, wait up to 5 s, then SIGKILL; reaps the child.
stop_pid() {
    local pid=$1 i
    [[ -n $pid ]] || return 0
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for i in {1..50}; do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
    fi
    wait "$pid" 2>/dev/null || true
    local keep=() p
    for p in "${STARTED_PIDS[@]}"; do [[ $p == "$pid" ]] || keep+=("$p"); done
    STARTED_PIDS=("${keep[@]}")
}

stop_all() {
    local p
    for p in "${STARTED_PIDS[@]}"; do stop_pid "$p"; done
}

# port_listening PORT : something listens on TCP PORT (read from /proc/net/tcp,
# so no probe connection is made).
port_listening() {
    local hex
    hex=$(printf ':%04X' "$1")
    awk -v h="$hex" '$4 == "0A" && substr($2, length($2) - 4) == h { f = 1 } END { exit !f }' \
        /proc/net/tcp /proc/net/tcp6 2>/dev/null
}

# wait_port PORT [TRIES] : wait until PORT listens; 0.1 s per try (default 100).
wait_port() {
    local i
    for ((i = 0; i < ${2:-100}; i++)); do
        port_listening "$1" && return 0
        sleep 0.1
    done
    return 1
}

# ---- /proc accounting ------------------------------------------------------
# pid_tree PID : PID and all its descendants (nginx master + workers, ...).
pid_tree() {
    ps -e -o pid=,ppid= | awk -v root="$1" '
        { parent[$1] = $2; pids[NR] = $1 }
        END {
            keep[root] = 1; changed = 1
            while (changed) { changed = 0
                for (i in pids) { p = pids[i]
                    if (!(p in keep) && (parent[p] in keep)) { keep[p] = 1; changed = 1 } } }
            for (p in keep) print p
        }'
}

# cpu_ticks PID : "ALL USER" clock ticks of PID's whole tree (all threads): user+system, and
# the user-space share of it, where a proxy's own code (not the kernel's network stack) spends.
# (Children that already exited, e.g. old nginx workers after a reload, count
# through their parent's cutime/cstime once reaped.)
cpu_ticks() {
    local all=0 user=0 p f a
    for p in $(pid_tree "$1"); do
        f=$(cat "/proc/$p/stat" 2>/dev/null) || continue
        f=${f##*) }                       # drop "pid (comm) "; state is field 1 now
        read -r -a a <<<"$f"
        all=$((all + a[11] + a[12] + a[13] + a[14])) # utime, stime, cutime, cstime
        user=$((user + a[11] + a[13]))
    done
    echo "$all $user"
}
CLK_TCK=$(getconf CLK_TCK)

# user_pct USER_TICKS ALL_TICKS -> the user share in percent
user_pct() { awk -v u="$1" -v c="$2" 'BEGIN { if (c > 0) printf "%.0f", 100 * u / c }'; }

# rss_kib PID : resident memory of PID's tree in KiB.
rss_kib() {
    local total=0 p v
    for p in $(pid_tree "$1"); do
        v=$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2>/dev/null) || continue
        total=$((total + ${v:-0}))
    done
    echo "$total"
}

# cpu_snapshot : "busy0 total0 busy1 total1" (jiffies of the two cores) from /proc/stat
cpu_snapshot() {
    awk -v c0="cpu$LOADGEN_CPU" -v c1="cpu$PROXY_CPU" '
        $1 == c0 || $1 == c1 {
            t = 0; for (i = 2; i <= NF; i++) t += $i
            idle = $5 + $6
            if ($1 == c0) { b0 = t - idle; t0 = t } else { b1 = t - idle; t1 = t }
        }
        END { print b0, t0, b1, t1 }' /proc/stat
}

# cpu_delta "SNAP_BEFORE" "SNAP_AFTER" : "cpu0% cpu1%"
cpu_delta() {
    awk -v a="$1" -v b="$2" 'BEGIN {
        split(a, x, " "); split(b, y, " ")
        d0 = y[2] - x[2]; d1 = y[4] - x[4]
        printf "%.0f %.0f\n", d0 ? 100 * (y[1] - x[1]) / d0 : 0, d1 ? 100 * (y[3] - x[3]) / d1 : 0 }'
}

now_s() { date +%s.%N; }

# ---- load generator ----------------------------------------------------------
# lg LIMIT CMD... : run a load-generator command on the load-generator core,
# bounded by `timeout LIMIT`, and log the exact command in $RAW/commands.log.
lg() {
    local limit=$1
    shift
    { printf 'taskset -c %s timeout %s' "$LOADGEN_CPU" "$limit"; printf ' %q' "$@"; echo; } >>"$RAW/commands.log"
    taskset -c "$LOADGEN_CPU" timeout "$limit" "$@"
}

# parse_wrk FILE -> "rps requests p50_ms p99_ms errors"
parse_wrk() {
    awk 'function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /s$/) return v * 1000; return v + 0 }
        /^Requests\/sec:/ { rps = $2 }
        / requests in / { req = $1 }
        $1 == "50%" { p50 = ms($2) }
        $1 == "99%" { p99 = ms($2) }
        /Socket errors:/ { gsub(/,/, ""); err += $4 + $6 + $8 + $10 }
        /Non-2xx or 3xx responses:/ { err += $NF }
        END { printf "%.0f %d %.3f %.3f %d\n", rps, req, p50, p99, err }' "$1"
}

# parse_hsload FILE -> "rate connections p50_ms p99_ms errors" (bench-tool hsload output)
parse_hsload() {
    awk '{ for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] } }
        END { printf "%.0f %d %.3f %.3f %d\n", v["rate"], v["connections"], v["p50_ms"], v["p99_ms"], v["errors"] }' "$1"
}

# ---- setup: packages, helpers, host names, certificates ----------------------
PKGS=(nginx-full libnginx-mod-stream haproxy wrk nghttp2-client openssl iperf3 curl procps
      util-linux gcc libc6-dev python3 coreutils)

ensure_packages() {
    local missing=() p
    for p in "${PKGS[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
    done
    ((${#missing[@]})) || return 0
    command -v apt-get >/dev/null || die "missing packages ${missing[*]} and no apt-get (Debian/Ubuntu only)"
    log "installing from Debian: ${missing[*]}"
    local sudo=()
    ((EUID == 0)) || sudo=(sudo)
    "${sudo[@]}" timeout 600 apt-get update -q || die "apt-get update failed"
    # The packaged nginx/haproxy services are never used (run.sh starts its own instances).
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive timeout 900 \
        apt-get install -y -q --no-install-recommends "${missing[@]}" || die "apt-get install failed"
}

ensure_hosts() {
    local h sudo=()
    ((EUID == 0)) || sudo=(sudo)
    for h in "$HOST_A" "$HOST_B"; do
        getent hosts "$h" | grep -q '^127\.' && continue
        log "adding '127.0.0.1 $h' to /etc/hosts (wrk sends the URL's host as SNI)"
        echo "127.0.0.1 $h" | "${sudo[@]}" tee -a /etc/hosts >/dev/null || die "cannot edit /etc/hosts"
    done
}

ensure_clientcert_shim() {
    mkdir -p "$BUILD_DIR"
    if [[ ! -f $BUILD_DIR/clientcert.so || $COMPARE_DIR/tools/clientcert.c -nt $BUILD_DIR/clientcert.so ]]; then
        cc -O2 -Wall -shared -fPIC -o "$BUILD_DIR/clientcert.so" "$COMPARE_DIR/tools/clientcert.c" -ldl ||
            die "building tools/clientcert.c failed"
    fi
}

# ensure_certs : CA, ECDSA P-256 and RSA-2048 server certs for HOST_A/HOST_B
# ({a,b}.{ecdsa,rsa}.{crt,key,pem}), a client cert (client.{crt,key}); kept if present.
ensure_certs() {
    [[ -f $CERTS/client.pem ]] && return 0
    log "generating certificates in $CERTS"
    mkdir -p "$CERTS"
    (
        set -e
        cd "$CERTS"
        openssl ecparam -name prime256v1 -genkey -noout -out ca.key
        openssl req -x509 -new -key ca.key -sha256 -days 3650 -subj "/CN=bench local CA" \
            -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
            -out ca.crt 2>/dev/null
        issue() { # NAME KEYTYPE CN EKU
            local name=$1 type=$2 cn=$3 eku=$4 ext
            case $type in
                ecdsa) openssl ecparam -name prime256v1 -genkey -noout -out "$name.key.tmp"
                       openssl pkcs8 -topk8 -nocrypt -in "$name.key.tmp" -out "$name.key"; rm -f "$name.key.tmp" ;;
                rsa)   openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$name.key" 2>/dev/null ;;
            esac
            ext=$(mktemp)
            printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=%s\n' "$eku" >"$ext"
            [[ $eku == serverAuth ]] && printf 'subjectAltName=DNS:%s\n' "$cn" >>"$ext"
            openssl req -new -key "$name.key" -subj "/CN=$cn" |
                openssl x509 -req -CA ca.crt -CAkey ca.key -CAcreateserial -sha256 -days 3650 \
                    -extfile "$ext" -out "$name.crt" 2>/dev/null
            rm -f "$ext"
            cat "$name.crt" "$name.key" >"$name.pem"
        }
        for h in a b; do
            host_var=HOST_${h^^}
            issue "$h.ecdsa" ecdsa "${!host_var}" serverAuth
            issue "$h.rsa" rsa "${!host_var}" serverAuth
        done
        issue client ecdsa bench-client clientAuth
        rm -f ca.srl
        chmod 644 ./*.key # proxies may drop privileges before reading keys
    ) || { rm -rf "$CERTS"; die "generating certificates failed"; }
}

# ensure_sni_certs TOOL : scenario I's SNI_HOSTS certificates (one shared key), kept if present.
ensure_sni_certs() {
    [[ -f $SNI_DIR/names.txt && $(wc -l <"$SNI_DIR/names.txt") -eq $SNI_HOSTS ]] && return 0
    log "generating $SNI_HOSTS certificates in $SNI_DIR"
    rm -rf "$SNI_DIR"
    timeout 300 "$1" sni-certs --dir "$SNI_DIR" --count "$SNI_HOSTS" --domain "$SNI_DOMAIN" ||
        { rm -rf "$SNI_DIR"; die "generating scenario I's certificates failed"; }
}

# ---- backends ------------------------------------------------------------------
# One nginx (1 worker) on the load generator's core: HTTP/1.1 on BACKEND_HTTP_PORT
# and TLS 1.3 with the ECDSA certs of HOST_A/HOST_B on BACKEND_TLS_PORT (the
# passthrough target), `return 200` with a 64-byte body; an iperf3 server on
# SINK_PORT is the raw TCP sink.
BACKEND_BODY='bench backend says hello; this body is 64 bytes long............'
BACKEND_NGINX_PID=
SINK_PID=

backend_nginx_conf() { # DIR
    local dir=$1 h host_var opts=" backlog=4096"
    cat <<EOF
# generated by benches/compare/lib.sh
worker_processes 1;
daemon off;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
worker_rlimit_nofile 20000;
events { worker_connections 16000; }
http {
    access_log off;
    keepalive_timeout 300s;
    keepalive_requests 1000000;
    default_type text/plain;
    client_body_temp_path $dir/tmp;
    proxy_temp_path $dir/tmp;
    fastcgi_temp_path $dir/tmp;
    uwsgi_temp_path $dir/tmp;
    scgi_temp_path $dir/tmp;
    ssl_protocols TLSv1.3;
    ssl_session_tickets off;
    ssl_session_cache off;
    server {
        listen $LISTEN_ADDR:$BACKEND_HTTP_PORT backlog=4096;
        location / { add_header X-Backend http; return 200 "$BACKEND_BODY"; }
    }
EOF
    for h in a b; do
        host_var=HOST_${h^^}
        cat <<EOF
    server {
        listen $LISTEN_ADDR:$BACKEND_TLS_PORT ssl$opts;
        server_name ${!host_var};
        ssl_certificate $CERTS/$h.ecdsa.crt;
        ssl_certificate_key $CERTS/$h.ecdsa.key;
        location / { add_header X-Backend tls; return 200 "$BACKEND_BODY"; }
    }
EOF
        opts=""
    done
    echo "}"
}

backend_nginx_start() { # CPU
    local cpu=$1 dir=$RUN_DIR/backend port
    # A stray server on a backend port would answer in the backends' place, unpinned, and
    # take CPU from the proxy's core: refuse to measure then.
    for port in "$BACKEND_HTTP_PORT" "$BACKEND_TLS_PORT"; do
        port_listening "$port" && die "backend port $port is already in use (a stray backend?)"
    done
    mkdir -p "$dir/tmp"
    backend_nginx_conf "$dir" >"$dir/nginx.conf"
    start_bg "$dir/stderr.log" "$cpu" nginx -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log"
    BACKEND_NGINX_PID=$LAST_PID
    { wait_port "$BACKEND_HTTP_PORT" && wait_port "$BACKEND_TLS_PORT"; } || die "backend nginx did not start, see $dir/"
}

sink_start() { # CPU
    port_listening "$SINK_PORT" && die "sink port $SINK_PORT is already in use"
    start_bg "$RUN_DIR/iperf3-server.log" "$1" iperf3 -s -B "$LISTEN_ADDR" -p "$SINK_PORT"
    SINK_PID=$LAST_PID
    wait_port "$SINK_PORT" || die "iperf3 server did not start"
}

backends_stop() {
    stop_pid "$BACKEND_NGINX_PID"; BACKEND_NGINX_PID=
    stop_pid "$SINK_PID"; SINK_PID=
}
