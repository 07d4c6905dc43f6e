#!/usr/bin/env bash
# Regenerates the demo credentials in Kubernetes secret layout (public test material, committed):
#   ca/ca.crt, ca/ca.key           the demo CA (ECDSA P-256, 10 years)
#   webapp-credential/             webapp.istioinaction.io and secure.istioinaction.io
#   catalog-credential/            catalog.istioinaction.io
#   mtls-credential/               mtls.istioinaction.io, plus ca.crt to verify clients (MUTUAL)
#   clients/webapp/                a client certificate for MUTUAL
#   simple-tls-service-1/, -2/     the demo's TLS backends behind PASSTHROUGH, for
#                                  simple-sni-1/-2.istioinaction.io (tollgate never holds these
#                                  keys: the backends terminate TLS themselves)
# Leaf certificates live 397 days (the CA/Browser Forum's limit for public certificates, which
# scripts/testssl.sh holds the demo to) and the server ones name a CRL distribution point where the
# demo CA would publish its revocation list (http://ca.istioinaction.io/ca.crl; nothing serves
# it, and neither tollgate nor the tests fetch it). tests/tls_posture.rs fails a month before
# they expire: re-issue them with `certs/generate.sh --leaves`, then deploy/kind/sync.sh.
# Usage: certs/generate.sh            new CA and leaves (needs openssl; overwrites the files above)
#        certs/generate.sh --leaves   new leaf certificates and keys, keeping ca/ (and so every
#                                     client's trust in it)
set -euo pipefail
cd "$(dirname "$0")"
ca_days=3650
days=397
crl_uri="http://ca.istioinaction.io/ca.crl"
leaves_only=false
case "${1:-}" in
    "") ;;
    --leaves) leaves_only=true ;;
    *) echo "usage: $0 [--leaves]" >&2; exit 2 ;;
esac

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1"; }
serial() { echo "0x$(openssl rand -hex 12)"; }

if ! $leaves_only; then
    mkdir -p ca
    key ca/ca.key
    openssl req -x509 -new -key ca/ca.key -days "$ca_days" -subj "/O=tollgate demo/CN=tollgate demo CA" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -set_serial "$(serial)" -out ca/ca.crt
fi

# leaf DIR CN SANS USAGE
leaf() {
    mkdir -p "$1"
    key "$1/tls.key"
    local ext
    ext="$(printf 'subjectAltName=%s\nextendedKeyUsage=%s\nbasicConstraints=CA:FALSE\n' "$3" "$4")"
    if [ "$4" = serverAuth ]; then
        ext+=$'\n'"crlDistributionPoints=URI:$crl_uri"
    fi
    openssl req -new -key "$1/tls.key" -subj "/O=tollgate demo/CN=$2" |
        openssl x509 -req -CA ca/ca.crt -CAkey ca/ca.key -set_serial "$(serial)" -days "$days" \
            -extfile <(printf '%s\n' "$ext") -out "$1/tls.crt" 2>/dev/null
}

leaf webapp-credential webapp.istioinaction.io "DNS:webapp.istioinaction.io,DNS:secure.istioinaction.io" serverAuth
leaf catalog-credential catalog.istioinaction.io "DNS:catalog.istioinaction.io" serverAuth
leaf mtls-credential mtls.istioinaction.io "DNS:mtls.istioinaction.io" serverAuth
cp ca/ca.crt mtls-credential/ca.crt
for n in 1 2; do
    leaf "simple-tls-service-$n" "simple-sni-$n.istioinaction.io" "DNS:simple-sni-$n.istioinaction.io" serverAuth
done
leaf clients/webapp webapp-client "DNS:webapp-client.istioinaction.io,URI:spiffe://istioinaction/webapp" clientAuth
echo "demo credentials written under $(pwd)"
