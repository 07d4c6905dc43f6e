#!/usr/bin/env bash
# Soak test (issue 9): a few minutes of mixed HTTP / HTTPS / TLS passthrough / TCP load through
# one gateway while its configuration is reloaded 50 times, the webapp certificate is rotated
# 10 times, one HTTP backend is killed and restarted, and slowloris clients hold connections.
# Judged: no failed request except those routed to the killed backend while it was down, every
# reload counted by the gateway, RSS after the load within 10 % of the warm-up level, fds back
# to the pre-load count. Prints a summary table; exits 1 when a judgement fails.
#
# Usage: scripts/soak.sh [--duration SECONDS] [--keep] [DRIVER OPTIONS...]
#   --duration S   seconds of load (default 210; the whole run takes about 40 s more)
#   --keep         keep the temporary directory (config, certs, logs) and print its path
#   DRIVER OPTIONS are passed to `scripts/soak.py run` (see `python3 scripts/soak.py run -h`):
#                  --reloads, --rotations, --slowloris, --rate, --warmup, --rss-margin, ...
# Env: TOLLGATE_BIN (default target/release/tollgate, built with `cargo build --release` when
#      unset), PYTHON (default python3). Needs python3, openssl, socat.
# Traffic goes to 127.0.0.1 only, on free ports; every wait is bounded. Not part of CI.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
driver="$root/scripts/soak.py"
python="${PYTHON:-python3}"
duration=210
keep=0
passthru=()
while (($#)); do
    case "$1" in
    --duration) duration="$2"; shift 2 ;;
    --duration=*) duration="${1#*=}"; shift ;;
    --keep) keep=1; shift ;;
    -h | --help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) passthru+=("$1"); shift ;;
    esac
done

for tool in "$python" openssl socat; do
    command -v "$tool" >/dev/null || { echo "soak: $tool is not on the PATH" >&2; exit 2; }
done

if [[ -z "${TOLLGATE_BIN:-}" ]]; then
    echo "soak: building the release binary" >&2
    (cd "$root" && nice -n 10 cargo build --release --quiet)
    TOLLGATE_BIN="$root/target/release/tollgate"
fi
[[ -x "$TOLLGATE_BIN" ]] || { echo "soak: $TOLLGATE_BIN is not executable" >&2; exit 2; }

tmp="$(mktemp -d "${TMPDIR:-/tmp}/tollgate-soak.XXXXXX")"
pids=()
victim_pid_file="$tmp/victim.pid"
cleanup() {
    local rc=$?
    set +e
    if [[ -s "$victim_pid_file" ]]; then kill "$(cat "$victim_pid_file")" 2>/dev/null; fi
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null; done
    # Bounded: the gateway drains for at most 2 s; anything left after 5 s is killed.
    for _ in $(seq 50); do
        local left=0
        for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && left=1; done
        ((left)) || break
        sleep 0.1
    done
    for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null; done
    if ((keep)); then echo "soak: kept $tmp" >&2; else rm -rf "$tmp"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$tmp/config" "$tmp/certs" "$tmp/stage" "$tmp/logs"
read -r p_web p_cat1 p_cat2 p_victim p_echo p_tls p_http p_https p_tcp p_admin p_health p_metrics \
    < <("$python" "$driver" free-ports 12)

"$python" "$driver" setup --config-dir "$tmp/config" --certs-dir "$tmp/certs" \
    --demo-certs "$root/certs" --web "$p_web" --cat1 "$p_cat1" --cat2 "$p_cat2" \
    --victim "$p_victim" --echo "$p_echo" --tls "$p_tls"

start() { # NAME CMD...: runs CMD in the background, logging to logs/NAME.log
    local name="$1"; shift
    "$@" >"$tmp/logs/$name.log" 2>&1 &
    pids+=("$!")
}
start webapp "$python" "$driver" backend-http --port "$p_web" --service webapp
start catalog-v1 "$python" "$driver" backend-http --port "$p_cat1" --service catalog --version v1
start catalog-v2 "$python" "$driver" backend-http --port "$p_cat2" --service catalog --version v2
victim_cmd=("$python" "$driver" backend-http --port "$p_victim" --service victim)
# Not a job of this shell: the driver kills it (SIGKILL) and starts another.
("${victim_cmd[@]}" >"$tmp/logs/victim.log" 2>&1 & echo $! >"$victim_pid_file")
start tls-backend "$python" "$driver" backend-tls --port "$p_tls" --service simple-tls-service-1 \
    --cert "$tmp/certs/simple-tls-service-1/tls.crt" --key "$tmp/certs/simple-tls-service-1/tls.key"
start tcp-echo socat -T 60 "TCP-LISTEN:$p_echo,bind=127.0.0.1,reuseaddr,fork,nodelay,backlog=512" PIPE

"$TOLLGATE_BIN" check --config-dir "$tmp/config" --certs-dir "$tmp/certs" --no-dns \
    >"$tmp/logs/check.log" 2>&1 || { cat "$tmp/logs/check.log" >&2; exit 2; }

start gateway "$TOLLGATE_BIN" run --config-dir "$tmp/config" --certs-dir "$tmp/certs" \
    --port-map "80=$p_http" --port-map "443=$p_https" --port-map "31400=$p_tcp" \
    --admin-addr "127.0.0.1:$p_admin" --health-addr "127.0.0.1:$p_health" \
    --metrics-addr "127.0.0.1:$p_metrics" --drain-timeout 2s
gateway_pid="${pids[-1]}"

# Ready when the gateway says so and every backend port accepts (10 s at most).
ready=0
for _ in $(seq 100); do
    if "$TOLLGATE_BIN" health --url "http://127.0.0.1:$p_health/healthz/ready" --timeout 1s >/dev/null \
        && "$python" - "$p_web" "$p_cat1" "$p_cat2" "$p_victim" "$p_echo" "$p_tls" <<'EOF'
import socket, sys
for p in sys.argv[1:]:
    socket.create_connection(("127.0.0.1", int(p)), timeout=1).close()
EOF
    then ready=1; break; fi
    kill -0 "$gateway_pid" 2>/dev/null || break
    sleep 0.1
done 2>/dev/null
if ((!ready)); then
    echo "soak: the gateway or a backend did not come up; logs:" >&2
    tail -n 20 "$tmp"/logs/*.log >&2
    exit 2
fi
echo "soak: gateway pid $gateway_pid on 127.0.0.1:$p_http (80) :$p_https (443) :$p_tcp (31400);" \
    "temp dir $tmp" >&2

victim_json="$("$python" -c 'import json,sys; print(json.dumps(sys.argv[1:]))' "${victim_cmd[@]}")"
rc=0
"$python" "$driver" run --gateway-pid "$gateway_pid" --duration "$duration" \
    --http-port "$p_http" --https-port "$p_https" --tcp-port "$p_tcp" \
    --admin-port "$p_admin" --metrics-port "$p_metrics" --victim-port "$p_victim" \
    --config-dir "$tmp/config" --certs-dir "$tmp/certs" --stage-dir "$tmp/stage" \
    --victim-pid-file "$victim_pid_file" --victim-cmd "$victim_json" \
    ${passthru[@]+"${passthru[@]}"} || rc=$?

errors="$(grep -c -E ' ERROR |panicked' "$tmp/logs/gateway.log" || true)"
echo "gateway log: $(wc -l <"$tmp/logs/gateway.log") lines, $errors ERROR/panic lines" \
    "($( ((keep)) && echo "$tmp/logs/gateway.log" || echo "--keep keeps it"))"
if grep -q 'panicked' "$tmp/logs/gateway.log"; then
    grep -m 5 'panicked' "$tmp/logs/gateway.log"
    echo "FAIL  the gateway panicked"
    rc=1
fi
exit "$rc"
