#!/usr/bin/env bash
# test_faults_smoke - the fault instrument (bench/faults/faults.js) run small:
# 2 rooms x 2 members for 5 s, one shard stopped for 2 s, against the daemons
# of BIN_DIR (under the instrument's bash stand-in for `./nearchat up`, on
# free ports). It must complete, print its table, and report a measurement:
# messages made, acknowledged, stored and delivered, the fault injected into
# a live roomd, the histories read, and its books balanced (every message
# made is acknowledged or still waiting). What the fault cost (losses, gaps,
# times) is not asserted: it is what the instrument measures.
#
#   test_faults_smoke.sh SOURCE_DIR BIN_DIR
set -euo pipefail
source_dir=$1
bin_dir=$(cd "$2" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

if ! command -v node >/dev/null || [ ! -d "$source_dir/bench/node_modules/ws" ]; then
    echo "FAIL node or bench/node_modules/ws is missing (./nearchat test installs them)"
    exit 1
fi
status=0
timeout 90 node "$source_dir/bench/faults/faults.js" --bin "$bin_dir" --rooms 2 --members 2 \
    --before 3 --after 3 --drain 10 --settle 1 --scenarios roomd:stop:2 \
    --json "$work/faults.json" >"$work/table.txt" || status=$?
cat "$work/table.txt"
if [ "$status" -ne 0 ]; then
    echo "FAIL faults.js exited with status $status"
    exit 1
fi
failed=0
check() {
    if [ "$2" != true ]; then echo "FAIL $1"; failed=1; else echo "ok   $1"; fi
}
check "the table has its header" \
    "$(grep -q '^scenario  *sent  *acked lost' "$work/table.txt" && echo true)"
check "the table has the scenario's row" \
    "$(grep -Eq '^roomd SIGSTOP 2 s +[0-9]+ +[0-9]+ ' "$work/table.txt" && echo true)"
figure() {
    node -e 'const r = require(process.argv[1]).scenarios[0];
             console.log(String(eval(process.argv[2])))' "$work/faults.json" "$1"
}
check "messages were made and acknowledged" "$(figure 'r.sent > 0 && r.acked > 0')"
check "every message made is acknowledged or waiting" "$(figure 'r.sent === r.acked + r.unacked')"
check "the fault hit a live roomd" "$(figure 'r.fault_pid > 0 && r.fault_error === null')"
check "every history was read" \
    "$(figure 'r.history_unreadable === 0 && r.history_messages > 0 && r.lost !== null')"
check "messages were delivered" "$(figure 'r.delivered > 0')"
check "every figure is reported" "$(figure '["never", "out_of_order", "dup_deliv", "history_dup",
    "max_wait_ms", "resends"].every(k => typeof r[k] === "number")')"
exit $failed
