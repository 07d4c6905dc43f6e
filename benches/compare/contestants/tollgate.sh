# Contestant: tollgate (this repository). Adapted from the workplace bench
# harness's contestants/gateway.sh.
#
# ---- The contestant interface (every file in contestants/ implements it) ----
# run.sh sources the file in a subshell, with lib.sh already sourced, and calls:
#   c_available           return 0 if the proxy can run here; else print why
#   c_version             print one line: name/version
#   c_supports SCENARIO   return 0 if SCENARIO is supported (G runs on B's config)
#   c_start SCENARIO DIR  write the config for SCENARIO into the empty folder DIR,
#                         then `exec` the proxy in the FOREGROUND, logging to
#                         stdout/stderr. run.sh has already pinned the process to
#                         the proxy CPU(s); it stops it with SIGTERM to that PID.
#   c_reload DIR PID N    (scenario H) make the running proxy reload its config
#                         for the N-th time (1..100); optional.
# Environment (see lib.sh): WORKERS, LISTEN_ADDR, PORT_A..PORT_I, HOST_A, HOST_B,
# CERTS, SNI_DIR, SNI_DOMAIN, SNI_HOSTS, BACKEND_HTTP_PORT, BACKEND_TLS_PORT, SINK_PORT.
#
# ---- What each scenario expects from the proxy ----
#   A    PORT_A   HTTP/1.1 reverse proxy: Host a.bench.test or b.bench.test ->
#                 BACKEND_HTTP_PORT; any other Host -> 404. Client keep-alive;
#                 pooled keep-alive upstream connections.
#   B    PORT_B   HTTPS, TLS 1.3 only: SNI a.bench.test -> a.ecdsa cert,
#                 b.bench.test -> b.ecdsa cert; then as A.
#   C    PORT_C   as B; every request is a new full TLS 1.3 handshake (no session
#                 tickets or cache on the proxy).
#   Crsa PORT_CRSA as C with the RSA-2048 certs {a,b}.rsa.
#   D    PORT_D   as B plus mTLS: client cert required, verified against ca.crt.
#   E    PORT_E   TLS passthrough: route on the ClientHello's SNI, forward the raw
#                 bytes to BACKEND_TLS_PORT.
#   F    PORT_F   raw TCP forward to SINK_PORT.
#   H    PORT_H   as B; c_reload is called 100 times during the load.
#   I    PORT_I   as C with SNI_HOSTS hosts h<i>.SNI_DOMAIN, each with its own
#                 certificate ($SNI_DIR/creds/h<i>/, $SNI_DIR/pem/h<i>.pem).
#
# ---- tollgate ----
# TOLLGATE_BIN is the release binary (run.sh builds it unless it is set). The
# config is Istio YAML (ServiceEntry, Gateway, VirtualService, Secret) in DIR/config.

TOLLGATE_BIN=${TOLLGATE_BIN:-$REPO_DIR/target/release/tollgate}

c_available() {
    [[ -x $TOLLGATE_BIN ]] || { echo "no tollgate binary at $TOLLGATE_BIN"; return 1; }
}
c_version() { "$TOLLGATE_BIN" --version 2>/dev/null | head -1 || echo "tollgate/unknown"; }
c_supports() { [[ $1 =~ ^(A|B|C|Crsa|D|E|F|H|I)$ ]]; }

c_start() {
    local sc=$1 dir=$2 certs extra=()
    certs=$(tg_write_config "$sc" "$dir") || return 1
    # C, Crsa and I measure full handshakes: no session resumption.
    [[ $sc =~ ^(C|Crsa|I)$ ]] && extra+=(--no-session-resumption)
    exec "$TOLLGATE_BIN" run --workers "$WORKERS" "${extra[@]}" \
        --config-dir "$dir/config" --certs-dir "$certs" --namespace bench --gateway-namespace bench \
        --admin-addr "$LISTEN_ADDR:$TG_ADMIN_PORT" --health-addr "$LISTEN_ADDR:$TG_HEALTH_PORT" \
        --metrics-addr "$LISTEN_ADDR:$TG_METRICS_PORT"
}

# tg_write_config SCENARIO DIR : write SCENARIO's Istio YAML into DIR/config and
# print the --certs-dir to use (tests/bench_compare.rs checks it with `tollgate check`).
tg_write_config() {
    local sc=$1 dir=$2 certs=$CERTS
    mkdir -p "$dir/config"
    gw_service_entries >"$dir/config/backends.yaml"
    case $sc in
        A) gw_http_gateway "$PORT_A" >"$dir/config/bench.yaml" ;;
        B | C | H) gw_https_gateway "$sc" "$(scenario_port "$sc")" SIMPLE ecdsa >"$dir/config/bench.yaml" ;;
        Crsa) gw_https_gateway "$sc" "$PORT_CRSA" SIMPLE rsa >"$dir/config/bench.yaml" ;;
        D) gw_https_gateway "$sc" "$PORT_D" MUTUAL ecdsa >"$dir/config/bench.yaml" ;;
        E) gw_passthrough_gateway "$PORT_E" >"$dir/config/bench.yaml" ;;
        F) gw_tcp_gateway "$PORT_F" >"$dir/config/bench.yaml" ;;
        I) gw_sni_gateway "$PORT_I" >"$dir/config/bench.yaml"; certs=$SNI_DIR/creds ;;
        *) echo "unknown scenario $sc" >&2; return 1 ;;
    esac
    # The route of B/C/Crsa/D/H lives in its own file: H rewrites it to reload.
    case $sc in
        H) gw_http_route bench-h 0 >"$dir/config/route.yaml" ;;
        B | C | Crsa | D) gw_http_route "bench-${sc,,}" >"$dir/config/route.yaml" ;;
    esac
    echo "$certs"
}

# c_reload DIR PID N : rewrite the VirtualService file (a new response header
# value each time), as an operator's `kubectl apply` or a ConfigMap update would.
c_reload() {
    local dir=$1 n=$3
    gw_http_route bench-h "$n" >"$dir/route.yaml.tmp" && mv "$dir/route.yaml.tmp" "$dir/config/route.yaml"
}

# c_reload_count DIR PID : reloads done so far (from the Prometheus endpoint).
c_reload_count() {
    curl -s --max-time 2 "http://$LISTEN_ADDR:$TG_METRICS_PORT/stats/prometheus" |
        awk '/^tollgate_config_reloads_total/ { s += $NF } END { print s + 0 }'
}

# Static endpoints for the three backends.
gw_service_entries() {
    local name port proto spec
    for spec in "http-backend $BACKEND_HTTP_PORT HTTP" "tls-backend $BACKEND_TLS_PORT TLS" "tcp-sink $SINK_PORT TCP"; do
        read -r name port proto <<<"$spec"
        cat <<EOF
---
apiVersion: networking.istio.io/v1beta1
kind: ServiceEntry
metadata: {name: $name, namespace: bench}
spec:
  hosts: [$name.bench.internal]
  location: MESH_EXTERNAL
  ports: [{number: $port, name: ${proto,,}, protocol: $proto}]
  resolution: STATIC
  endpoints: [{address: $LISTEN_ADDR}]
EOF
    done
}

gw_http_route() { # GATEWAY [REVISION] : VirtualService, both hosts -> HTTP backend (H adds a header)
    cat <<EOF
---
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: $1, namespace: bench}
spec:
  hosts: [$HOST_A, $HOST_B]
  gateways: [$1]
  http:
  - route:
    - destination: {host: http-backend.bench.internal, port: {number: $BACKEND_HTTP_PORT}}
EOF
    [[ -z ${2:-} ]] || echo "    headers: {response: {set: {x-bench-revision: \"$2\"}}}"
}

gw_http_gateway() { # A
    cat <<EOF
---
apiVersion: networking.istio.io/v1beta1
kind: Gateway
metadata: {name: bench-a, namespace: bench}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: $1, name: http, protocol: HTTP}
    hosts: [$HOST_A, $HOST_B]
EOF
    gw_http_route bench-a
}

gw_https_gateway() { # B, C, Crsa, H (SIMPLE) and D (MUTUAL): one server and credential per host
    local sc=${1,,} port=$2 mode=$3 kind=$4 h host_var
    for h in a b; do
        gw_tls_secret "bench-$h-$kind" "$CERTS/$h.$kind.crt" "$CERTS/$h.$kind.key" \
            "$([[ $mode == MUTUAL ]] && echo "$CERTS/ca.crt")"
    done
    cat <<EOF
---
apiVersion: networking.istio.io/v1beta1
kind: Gateway
metadata: {name: bench-$sc, namespace: bench}
spec:
  selector: {istio: ingressgateway}
  servers:
EOF
    for h in a b; do
        host_var=HOST_${h^^}
        cat <<EOF
  - port: {number: $port, name: https-$h, protocol: HTTPS}
    hosts: [${!host_var}]
    tls: {mode: $mode, credentialName: bench-$h-$kind, minProtocolVersion: TLSV1_3}
EOF
    done
}

gw_sni_gateway() { # I: SNI_HOSTS servers, credential h<i> each (folders in $SNI_DIR/creds)
    cat <<EOF
---
apiVersion: networking.istio.io/v1beta1
kind: Gateway
metadata: {name: bench-i, namespace: bench}
spec:
  selector: {istio: ingressgateway}
  servers:
EOF
    awk -v port="$1" -v dom="$SNI_DOMAIN" -v n="$SNI_HOSTS" 'BEGIN {
        for (i = 0; i < n; i++)
            printf "  - port: {number: %d, name: https-h%d, protocol: HTTPS}\n    hosts: [h%d.%s]\n    tls: {mode: SIMPLE, credentialName: h%d, minProtocolVersion: TLSV1_3}\n", port, i, i, dom, i }'
    cat <<EOF
---
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: bench-i, namespace: bench}
spec:
  hosts: ["*.$SNI_DOMAIN"]
  gateways: [bench-i]
  http:
  - route:
    - destination: {host: http-backend.bench.internal, port: {number: $BACKEND_HTTP_PORT}}
EOF
}

gw_passthrough_gateway() { # E
    cat <<EOF
---
apiVersion: networking.istio.io/v1beta1
kind: Gateway
metadata: {name: bench-e, namespace: bench}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: $1, name: tls, protocol: TLS}
    hosts: [$HOST_A, $HOST_B]
    tls: {mode: PASSTHROUGH}
---
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: bench-e, namespace: bench}
spec:
  hosts: [$HOST_A, $HOST_B]
  gateways: [bench-e]
  tls:
  - match: [{port: $1, sniHosts: [$HOST_A, $HOST_B]}]
    route:
    - destination: {host: tls-backend.bench.internal, port: {number: $BACKEND_TLS_PORT}}
EOF
}

gw_tcp_gateway() { # F
    cat <<EOF
---
apiVersion: networking.istio.io/v1beta1
kind: Gateway
metadata: {name: bench-f, namespace: bench}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: $1, name: tcp, protocol: TCP}
    hosts: ["*"]
---
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: bench-f, namespace: bench}
spec:
  hosts: ["*"]
  gateways: [bench-f]
  tcp:
  - match: [{port: $1}]
    route:
    - destination: {host: tcp-sink.bench.internal, port: {number: $SINK_PORT}}
EOF
}

# gw_tls_secret NAME CRT KEY [CA] : kubernetes.io/tls Secret (ca.crt added for MUTUAL)
gw_tls_secret() {
    cat <<EOF
---
apiVersion: v1
kind: Secret
metadata: {name: $1, namespace: bench}
type: kubernetes.io/tls
data:
  tls.crt: $(base64 -w0 "$2")
  tls.key: $(base64 -w0 "$3")
EOF
    if [[ -n ${4:-} ]]; then echo "  ca.crt: $(base64 -w0 "$4")"; fi
}
