#!/usr/bin/env bash
# testssl.sh against the demo's HTTPS port, judged from its JSON output.
#
#   scripts/testssl.sh [OUT_DIR]     (default OUT_DIR: target/testssl)
#
# Installs Debian's testssl.sh package if neither `testssl.sh` nor `testssl` (Debian's name for
# it) is on the PATH, starts `tollgate demo` (TOLLGATE_BIN, else target/release/tollgate built
# with `cargo build --release`) with its gateway ports and admin addresses on free loopback
# ports, then runs
#
#   testssl.sh --add-ca certs/ca/ca.crt --ip 127.0.0.1 --jsonfile OUT_DIR/testssl.json \
#              https://webapp.istioinaction.io:PORT
#
# (PORT: where the demo serves Gateway port 443) and prints a summary: findings by severity,
# the protocols and cipher suites offered, and every finding of severity LOW or above. Exits 1
# when any finding is MEDIUM, HIGH or CRITICAL or a protocol below TLS 1.2 is offered, 2 when
# the scan could not run. The demo's backends need 127.0.0.1:9081-9083, 9090, 9443 and 9444.
# Slow (about 1-2 minutes): not part of the test suite, which only checks this file with bash -n.
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-$repo/target/testssl}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
host=webapp.istioinaction.io

die() { echo "testssl.sh: $*" >&2; exit 2; }

testssl="$(command -v testssl.sh || command -v testssl || true)"
if [ -z "$testssl" ]; then
    echo "installing Debian's testssl.sh package" >&2
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    $sudo apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq testssl.sh >&2
    testssl="$(command -v testssl.sh || command -v testssl || true)"
    [ -n "$testssl" ] || die "the testssl.sh package installed no testssl.sh or testssl command"
fi
command -v python3 >/dev/null || die "python3 is needed to judge the JSON output"
command -v curl >/dev/null || die "curl is needed to wait for the gateway"

bin="${TOLLGATE_BIN:-}"
if [ -z "$bin" ]; then
    (cd "$repo" && nice -n 10 cargo build --release --quiet)
    bin="$repo/target/release/tollgate"
fi
[ -x "$bin" ] || die "no tollgate binary at $bin"

# Six free loopback ports: HTTP, HTTPS, TCP, admin, health, metrics.
read -r p_http p_https p_tcp p_admin p_health p_metrics < <(python3 -c '
import socket
socks = [socket.socket() for _ in range(6)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in socks])
')

log="$out/tollgate.log"
(cd "$repo" && exec "$bin" demo \
    --port-map "80=$p_http" --port-map "443=$p_https" --port-map "31400=$p_tcp" \
    --admin-addr "127.0.0.1:$p_admin" --health-addr "127.0.0.1:$p_health" \
    --metrics-addr "127.0.0.1:$p_metrics" --access-log /dev/null) >"$log" 2>&1 &
gw=$!
trap 'kill "$gw" 2>/dev/null; wait "$gw" 2>/dev/null || true' EXIT

ready=false
for _ in $(seq 1 150); do
    if curl -fsS -m 1 -o /dev/null "http://127.0.0.1:$p_health/healthz/ready" 2>/dev/null; then
        ready=true
        break
    fi
    kill -0 "$gw" 2>/dev/null || break
    sleep 0.2
done
$ready || { tail -20 "$log" >&2; die "tollgate demo was not ready within 30 s (log: $log)"; }
curl -fsS -m 5 -o /dev/null --cacert "$repo/certs/ca/ca.crt" \
    --resolve "$host:$p_https:127.0.0.1" "https://$host:$p_https/" ||
    die "https://$host:$p_https/ does not answer"

json="$out/testssl.json"
rm -f "$json"
echo "running $testssl against https://$host:$p_https (text report: $out/testssl.txt)" >&2
status=0
timeout 900 "$testssl" --quiet --color 0 --warnings off \
    --add-ca "$repo/certs/ca/ca.crt" --ip 127.0.0.1 --jsonfile "$json" \
    "https://$host:$p_https" >"$out/testssl.txt" 2>&1 || status=$?
# testssl.sh's exit status counts findings and failed checks; the JSON is what is judged.
[ -s "$json" ] || { tail -20 "$out/testssl.txt" >&2; die "no JSON output (exit status $status)"; }

python3 - "$json" <<'PY'
import json, sys

findings = json.load(open(sys.argv[1]))
order = ["CRITICAL", "HIGH", "MEDIUM", "LOW", "WARN", "INFO", "OK", "DEBUG"]
counts = {}
for f in findings:
    counts[f.get("severity", "?")] = counts.get(f.get("severity", "?"), 0) + 1
print("findings by severity: " + ", ".join(
    f"{s} {counts[s]}" for s in order + sorted(set(counts) - set(order)) if s in counts))

old = {"SSLv2": "SSLv2", "SSLv3": "SSLv3", "TLS1": "TLS 1.0", "TLS1_1": "TLS 1.1"}
protocols, weak = [], []
for f in findings:
    pid, text = f.get("id", ""), f.get("finding", "")
    name = old.get(pid) or {"TLS1_2": "TLS 1.2", "TLS1_3": "TLS 1.3"}.get(pid)
    if name is None:
        continue
    offered = "offered" in text and "not offered" not in text
    protocols.append(f"{name} {'offered' if offered else 'not offered'}")
    if offered and pid in old:
        weak.append(name)
print("protocols: " + "; ".join(protocols))

ciphers = [f.get("finding", "").split()[-1] for f in findings
           if f.get("id", "").startswith("cipher_x") and f.get("finding", "").split()]
print("ciphers offered: " + ", ".join(dict.fromkeys(ciphers)))
for f in findings:
    if f.get("id") in ("PFS_ECDHE_curves", "cipher_order"):
        print(f"{f['id']}: {f.get('finding', '')}")

bad = [f for f in findings if f.get("severity") in ("MEDIUM", "HIGH", "CRITICAL")]
for f in findings:
    if f.get("severity") in ("CRITICAL", "HIGH", "MEDIUM", "LOW", "WARN"):
        print(f"  {f['severity']:8} {f['id']}: {f.get('finding', '')}")
if bad or weak:
    why = []
    if bad:
        why.append(f"{len(bad)} finding(s) of severity MEDIUM or above")
    if weak:
        why.append("offered below TLS 1.2: " + ", ".join(weak))
    print("FAIL: " + "; ".join(why))
    sys.exit(1)
print("PASS: no finding of severity MEDIUM or above, nothing below TLS 1.2 offered")
PY
