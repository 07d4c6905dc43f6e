#!/usr/bin/env bash
# Refreshes deploy/kind's copies of the bundled demo from the repository:
#   config/  every file of gateway-configs/ except 00-backends.yaml, whose kind variant (DNS
#            endpoints naming the backend Services) lives only here and is left alone
#   certs/   the credential folders the kind deployment turns into Secrets
# kustomize's default load restrictor only reads files under deploy/kind/, hence the copies.
# Then: kubectl apply -k deploy/kind   (tests/deploy_kind.rs checks the copies are current).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"

mkdir -p "$here/config"
for f in "$here"/config/*.yaml; do
    [ -e "$f" ] || continue
    name="$(basename "$f")"
    if [ "$name" != 00-backends.yaml ] && [ ! -e "$repo/gateway-configs/$name" ]; then
        rm -- "$f"
        echo "removed config/$name (no longer in gateway-configs/)"
    fi
done
for f in "$repo"/gateway-configs/*.yaml; do
    name="$(basename "$f")"
    [ "$name" = 00-backends.yaml ] && continue
    cp -- "$f" "$here/config/$name"
    if ! grep -qF -- "- config/$name" "$here/kustomization.yaml"; then
        echo "warning: config/$name is not listed in kustomization.yaml's configMapGenerator" >&2
    fi
done

credentials=(webapp-credential catalog-credential mtls-credential simple-tls-service-1 simple-tls-service-2)
for c in "${credentials[@]}"; do
    rm -rf -- "${here:?}/certs/$c"
    mkdir -p "$here/certs/$c"
    cp -- "$repo/certs/$c"/* "$here/certs/$c/"
done

if ! cmp -s <(grep -E '^ *(name|hosts|- \{number|    labels):' "$repo/gateway-configs/00-backends.yaml") \
            <(grep -E '^ *(name|hosts|- \{number|    labels):' "$here/config/00-backends.yaml"); then
    echo "note: gateway-configs/00-backends.yaml differs from config/00-backends.yaml in names, hosts, ports or labels; update the kind variant by hand" >&2
fi
echo "deploy/kind: config/ and certs/ refreshed from gateway-configs/ and certs/"
