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
# Usage: certs/generate.sh   (needs openssl; overwrites the files above)
set -euo pipefail
cd "$(dirname "$0")"
days=3650

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1"; }
serial() { echo "0x$(openssl rand -hex 12)"; }

mkdir -p ca
key ca/ca.key
openssl req -x509 -new -key ca/ca.key -days "$days" -subj "/O=tollgate demo/CN=tollgate demo CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -set_serial "$(serial)" -out ca/ca.crt

# leaf DIR CN SANS USAGE
leaf() {
    mkdir -p "$1"
    key "$1/tls.key"
    openssl req -new -key "$1/tls.key" -subj "/O=tollgate demo/CN=$2" |
        openssl x509 -req -CA ca/ca.crt -CAkey ca/ca.key -set_serial "$(serial)" -days "$days" \
            -extfile <(printf 'subjectAltName=%s\nextendedKeyUsage=%s\nbasicConstraints=CA:FALSE\n' "$3" "$4") \
            -out "$1/tls.crt" 2>/dev/null
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
