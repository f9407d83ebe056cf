#!/usr/bin/env bash
# Writes the cloud NATS hub's config, credentials and leaf-link certificates for one overlay, where
# its secretGenerator reads them:
#
#   deploy/k8s/nats-config.sh production site-a-1,site-a-2,site-b-1 hub.example.net
#   deploy/k8s/nats-config.sh small edge-1 203.0.113.7
#
# -> deploy/k8s/overlays/<overlay>/nats/cloud.conf              (Secret nats-server-config)
#    deploy/k8s/overlays/<overlay>/nats/credentials/cloud.json  (Secret nats-cloud-credential)
#    deploy/k8s/overlays/<overlay>/nats/credentials/<edge>.json (give each edge its own)
#    deploy/k8s/overlays/<overlay>/nats/tls/hub/                (Secret nats-leaf-tls: the leaf port's
#                                                                certificate, key and the leaf CA)
#    deploy/k8s/overlays/<overlay>/nats/tls/ca.key, tls/edges/  (the CA's key and each edge's client
#                                                                certificate: never in the cluster)
#
# It runs `xiaozhi-cloud nats-config` with what the manifests expect: JetStream under the
# StatefulSet's volume (/data/jetstream), the default ports, the leaf TLS files where the StatefulSet
# mounts them (/etc/nats-tls), and for production the routes of the three-member cluster. The leaf
# link is mutual TLS: LEAF_HOST (comma-separated) is every name or address the edges dial the
# nats-leafnodes Service at; the hub's certificate is valid for those. Re-running with more edges or
# names keeps the existing credentials, CA and edge certificates, so deployed edges keep working;
# the files are git-ignored (deploy/k8s/.gitignore) and must never be committed. XIAOZHI_CLOUD names
# the command to run (default: xiaozhi-cloud on PATH); XIAOZHI_CA_CERT and XIAOZHI_CA_KEY, your own
# CA for the leaf link (default: a new one, made once).
set -euo pipefail

if [ "$#" -lt 2 ] || [ "$#" -gt 3 ]; then
    echo "usage: $0 production|small EDGE_ID[,EDGE_ID...] [LEAF_HOST[,LEAF_HOST...]]" >&2
    exit 2
fi
overlay=$1
edges=$2
leaf_hosts=${3:-}
here=$(cd "$(dirname "$0")" && pwd)
out="$here/overlays/$overlay/nats"

case "$overlay" in
    production)
        # Must match the StatefulSet: name nats, service nats-headless, replicas 3 (overlay), port 6222.
        extra=(--cluster-port 6222
               --routes nats-route://nats-0.nats-headless:6222,nats-route://nats-1.nats-headless:6222,nats-route://nats-2.nats-headless:6222)
        ;;
    small)
        extra=()
        ;;
    *)
        echo "$0: unknown overlay '$overlay' (production or small)" >&2
        exit 2
        ;;
esac

# Must match the StatefulSet: the Secret nats-leaf-tls (tls/hub/ here) is mounted at /etc/nats-tls.
extra+=(--leaf-tls-dir /etc/nats-tls)
if [ -n "$leaf_hosts" ]; then
    extra+=(--leaf-host "$leaf_hosts")
else
    echo "$0: no LEAF_HOST: the hub's leaf certificate names only localhost and 127.0.0.1, and edges dialling" \
         "the load balancer's address will refuse it; run again with it as the third argument" >&2
fi
if [ -n "${XIAOZHI_CA_CERT:-}" ] || [ -n "${XIAOZHI_CA_KEY:-}" ]; then
    extra+=(--ca-cert "${XIAOZHI_CA_CERT:-}" --ca-key "${XIAOZHI_CA_KEY:-}")
fi

read -r -a cli <<< "${XIAOZHI_CLOUD:-xiaozhi-cloud}"
"${cli[@]}" nats-config --edges "$edges" --out "$out" \
    --host 0.0.0.0 --port 4222 --leaf-port 7422 --http-port 8222 \
    --store-dir /data/jetstream "${extra[@]}"
