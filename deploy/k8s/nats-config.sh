#!/usr/bin/env bash
# Writes the cloud NATS hub's config and credentials for one overlay, where its secretGenerator
# reads them:
#
#   deploy/k8s/nats-config.sh production site-a-1,site-a-2,site-b-1
#   deploy/k8s/nats-config.sh small edge-1
#
# -> deploy/k8s/overlays/<overlay>/nats/cloud.conf              (Secret nats-server-config)
#    deploy/k8s/overlays/<overlay>/nats/credentials/cloud.json  (Secret nats-cloud-credential)
#    deploy/k8s/overlays/<overlay>/nats/credentials/<edge>.json (give each edge its own)
#
# It runs `xiaozhi-cloud nats-config` with what the manifests expect: JetStream under the
# StatefulSet's volume (/data/jetstream), the default ports, and for production the routes of the
# three-member cluster. Re-running with more edges keeps the existing credentials, so deployed edges
# keep working; the files are git-ignored (deploy/k8s/.gitignore) and must never be committed.
# XIAOZHI_CLOUD names the command to run (default: xiaozhi-cloud on PATH).
set -euo pipefail

if [ "$#" -ne 2 ]; then
    echo "usage: $0 production|small EDGE_ID[,EDGE_ID...]" >&2
    exit 2
fi
overlay=$1
edges=$2
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

read -r -a cli <<< "${XIAOZHI_CLOUD:-xiaozhi-cloud}"
"${cli[@]}" nats-config --edges "$edges" --out "$out" \
    --host 0.0.0.0 --port 4222 --leaf-port 7422 --http-port 8222 \
    --store-dir /data/jetstream "${extra[@]}"
