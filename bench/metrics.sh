#!/usr/bin/env bash
# Cost of live metrics: the helper's CPU while a subscriber samples N idle sandboxes at 1 Hz
# (target: at most 0.5% of one core with 50 sandboxes), and the cost of one sample of one
# sandbox. Runs wherever the helper runs: in the degraded mode metrics come from /proc (a scan
# per sandbox), with delegated cgroups from the cgroup files.
#
#   bench/metrics.sh            as a normal user with a subuid range
#   sudo bench/metrics.sh       as root: builds, then measures as the test user (hutch-test)
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
SANDBOXES=${SANDBOXES:-50}
SECONDS_MEASURED=${SECONDS_MEASURED:-30}

. "$(dirname "$0")/common.sh"
rerun_as_test_user "$0" SANDBOXES SECONDS_MEASURED
BIN=${HUTCH_BIN:-$TARGET_DIR/release}
start_helper "$BIN"
lock=$HELPER_LOCK
helper=$(cat "$lock")
pids=()
cleanup() {
    kill "${pids[@]}" 2>/dev/null || true
    kill "$helper" 2>/dev/null || true
}
trap cleanup EXIT
for _ in $(seq "$SANDBOXES"); do
    "$BIN/hutch" run -- sleep 100000 </dev/null >/dev/null 2>&1 &
    pids+=($!)
done
while [ "$("$BIN/hutch" ps --json | python3 -c 'import json,sys; print(sum(s["state"]=="running" for s in json.load(sys.stdin)))')" -lt "$SANDBOXES" ]; do
    sleep 0.2
done
mode=$("$BIN/hutch" doctor --json | python3 -c 'import json,sys; c=[c for c in json.load(sys.stdin)["checks"] if c["id"]=="cgroups"][0]; print("cgroup files" if c["status"]=="ok" else "/proc (degraded mode)")')
ticks() { awk '{print $14 + $15}' "/proc/$helper/stat"; }
hz=$(getconf CLK_TCK)
sleep 2
idle0=$(ticks); sleep "$SECONDS_MEASURED"; idle1=$(ticks)
"$BIN/hutch" top --interval 1 >/dev/null &
top=$!
pids+=($top)
sleep 2
t0=$(ticks); sleep "$SECONDS_MEASURED"; t1=$(ticks)
kill "$top"
python3 - "$hz" "$SECONDS_MEASURED" "$SANDBOXES" "$idle0" "$idle1" "$t0" "$t1" "$mode" <<'PY'
import sys
hz, secs, n = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
idle = (float(sys.argv[5]) - float(sys.argv[4])) / hz
busy = (float(sys.argv[7]) - float(sys.argv[6])) / hz
print(f"{n} idle sandboxes, metrics from {sys.argv[8]}")
print(f"helper CPU without subscribers: {idle / secs * 100:.3f}% of one core")
print(f"helper CPU sampling at 1 Hz:    {busy / secs * 100:.3f}% of one core (target <= 0.5%)")
per = (busy - idle) / (secs * n) * 1e6
print(f"one sample of one sandbox:      {per:.0f} us of CPU")
PY
