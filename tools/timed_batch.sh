#!/usr/bin/env bash
# Run a queue of training commands under one time budget and pack what they stored.
#
#   tools/timed_batch.sh BUDGET_SECONDS OUT_DIR QUEUE_FILE
#
# Each non-empty, non-comment line of QUEUE_FILE is one shell command, run in order with
# `timeout`: it gets the time left of the budget, less a reserve for packing
# ($LRBOOK_BATCH_RESERVE seconds, default 20). At the limit its whole process group gets SIGTERM
# (sweeps release their claims and keep their training states), then SIGKILL 30 s later.
# Afterwards the store's run records and artefacts written since the batch started (no claim
# files) are packed into OUT_DIR/results-new.tar.gz, relative to the store, and listed in
# OUT_DIR/new-files.txt. Unpack them into a checkout with `tar xzf results-new.tar.gz -C results`.
# Made for a device call with a hard wall-clock limit; exits with the last failed command's status.
set -u
if [ $# -ne 3 ]; then
    echo "usage: $0 BUDGET_SECONDS OUT_DIR QUEUE_FILE" >&2
    exit 2
fi
budget=$1 out=$2 queue=$3
case $budget in '' | *[!0-9]*) echo "BUDGET_SECONDS must be a whole number of seconds, not '$budget'" >&2; exit 2 ;; esac
[ -r "$queue" ] || { echo "cannot read the queue file $queue" >&2; exit 2; }
store=${LRBOOK_STORE:-$(cd "$(dirname "$0")/.." && pwd)/results}
reserve=${LRBOOK_BATCH_RESERVE:-20}
mkdir -p "$out" "$store/runs" "$store/artefacts"
stamp=$(mktemp)
touch "$stamp"
start=$(date +%s)
status=0
while IFS= read -r line || [ -n "$line" ]; do
    case $line in '' | '#'*) continue ;; esac
    left=$((start + budget - reserve - $(date +%s)))
    if [ "$left" -le 0 ]; then
        echo "[timed_batch] no time left for: $line" >&2
        status=124
        continue
    fi
    echo "[timed_batch] $(date -u +%H:%M:%S) ${left}s left: $line" >&2
    timeout -k 30 "$left" bash -c "$line"
    rc=$?
    if [ "$rc" -ne 0 ]; then
        echo "[timed_batch] exit $rc: $line" >&2
        status=$rc
    fi
done < "$queue"
(cd "$store" && find runs artefacts -type f -newer "$stamp" ! -name '*.lock' ! -name '.*' | sort) > "$out/new-files.txt"
tar czf "$out/results-new.tar.gz" -C "$store" -T "$out/new-files.txt"
rm -f "$stamp"
echo "[timed_batch] packed $(grep -c '^runs/' "$out/new-files.txt") run record(s) into $out/results-new.tar.gz" >&2
exit "$status"
