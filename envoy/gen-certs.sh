#!/usr/bin/env bash
# Makes the test PKI in DIR (default: envoy/.certs): a CA, a server certificate for
# localhost, and client certificates whose URI SANs are SPIFFE IDs, plus the odd ones the
# end-to-end suite needs. Nothing here is committed; tests run it at start-up.
set -euo pipefail
dir=${1:-"$(dirname "$0")/.certs"}
mkdir -p "$dir"
cd "$dir"
days=2

openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days $days \
  -subj "/CN=cordon test CA" -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null

issue() { # name, subject CN, extension lines
  local name=$1 cn=$2 ext=$3
  openssl req -newkey rsa:2048 -nodes -keyout "$name.key" -out "$name.csr" -subj "/CN=$cn" 2>/dev/null
  printf '%b\n' "$ext" > "$name.ext"
  openssl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -out "$name.crt" \
    -days $days -extfile "$name.ext" 2>/dev/null
  rm -f "$name.csr" "$name.ext"
}

issue server localhost "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth"
client="extendedKeyUsage=clientAuth\nsubjectAltName="
issue order-engine order-engine "${client}URI:spiffe://cluster.local/ns/shop/sa/order-engine"
issue frontend frontend "${client}URI:spiffe://cluster.local/ns/shop/sa/frontend"
issue foreign foreign "${client}URI:spiffe://evil.example/ns/shop/sa/order-engine"
issue invalid-spiffe invalid "${client}URI:spiffe://Cluster.Local/ns/shop/sa/order-engine"
issue two-uris two-uris "${client}URI:spiffe://cluster.local/ns/shop/sa/frontend,URI:spiffe://cluster.local/ns/shop/sa/order-engine"
issue two-uris-order-engine-first two-uris-2 "${client}URI:spiffe://cluster.local/ns/shop/sa/order-engine,URI:spiffe://cluster.local/ns/shop/sa/frontend"
issue ops ops "${client}URI:spiffe://cluster.local/ns/finance-ops/sa/ledger-operator"
echo "$dir"
