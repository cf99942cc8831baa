#!/bin/sh
# The one-shot `setup` service: makes the mesh's CA (in the `ca` volume, seen by no node) and
# a key and a certificate for each node (in the `mesh` volume, which the nodes mount
# read-only). Keys and the CA are made once and kept; certificates are signed again on every
# `up`, so that they never run out while the example is in use. It runs as root, to own the
# fresh `ca` volume, and hands what the nodes read to their user (65532) at the end.
set -eu

[ -f /ca/ca.crt ] || ferry ca init --name compose-mesh --valid 365d --out /ca
cp /ca/ca.crt /var/lib/ferry/ca.crt

# node NAME DATACENTER [SERVICES]
node() {
    key=/var/lib/ferry/$1.key
    [ -f "$key" ] || ferry keygen --out "$key" >/dev/null
    ferry ca sign --ca /ca --key "$key" --name "$1" --datacenter "$2" \
        ${3:+--services "$3"} --valid 30d --out "/var/lib/ferry/$1.crt"
}

for dc in dc1 dc2; do
    node "$dc-gw-a" "$dc"
    node "$dc-gw-b" "$dc"
    node "$dc-greeter" "$dc" greeter
    node "$dc-app" "$dc"
done
busybox chown -R 65532:65532 /var/lib/ferry
echo "setup: keys and certificates are in the mesh volume"
