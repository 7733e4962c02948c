#!/usr/bin/env bash
# On a GPU machine with no internet: unpack a bundle from tools/offline_bundle.sh, then run a queue
# under one budget with tools/timed_batch.sh (same arguments after the bundle).
#
#   tools/offline_run.sh BUNDLE_DIR BUDGET_SECONDS OUT_DIR QUEUE_FILE
#
# The datasets are unpacked into $TMPDIR/lrbook-data (LRBOOK_DATA points there), the bundle's
# packages go first on PYTHONPATH, and NVIDIA's MPS daemon is started where there is one, so that
# worker processes sharing the GPU run their kernels side by side.
set -u
if [ $# -ne 4 ]; then
    echo "usage: $0 BUNDLE_DIR BUDGET_SECONDS OUT_DIR QUEUE_FILE" >&2
    exit 2
fi
bundle=$(cd "$1" 2>/dev/null && pwd) || { echo "no bundle at $1: make one with tools/offline_bundle.sh" >&2; exit 2; }
shift
data=${TMPDIR:-/tmp}/lrbook-data
for gz in "$bundle"/data/*/raw/*.gz; do
    [ -e "$gz" ] || continue
    rel=${gz#"$bundle"/data/}
    mkdir -p "$data/$(dirname "$rel")"
    gunzip -c "$gz" > "$data/${rel%.gz}" || exit 1
done
export LRBOOK_DATA=$data PYTHONPATH=$bundle/site${PYTHONPATH:+:$PYTHONPATH}
if command -v nvidia-cuda-mps-control > /dev/null && nvidia-smi -L > /dev/null 2>&1; then
    nvidia-cuda-mps-control -d 2> /dev/null && echo "[offline_run] MPS daemon started" >&2
fi
exec bash "$(dirname "$0")/timed_batch.sh" "$@"
