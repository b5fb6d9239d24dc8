#!/usr/bin/env bash
# Startup cost of a sandbox: `hutch run -- /bin/true` (helper already running) against bwrap
# with equivalent isolation and `firejail --noprofile`, all in one hyperfine run, with ratios.
#
#   bench/startup.sh            as a normal user with a subuid range
#   sudo bench/startup.sh       as root: builds, then measures as the test user (hutch-test)
#
# Needs: hyperfine, bubblewrap, firejail (Debian packages). Release build of Hutch.
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
RUNS=${RUNS:-200}

. "$(dirname "$0")/common.sh"
rerun_as_test_user "$0" RUNS

BIN=${HUTCH_BIN:-$TARGET_DIR/release}
if [ ! -x "$BIN/hutch" ]; then
    cargo build --release --locked -p hutch -p hutch-helper
fi
for tool in hyperfine bwrap firejail; do
    command -v "$tool" >/dev/null || { echo "missing $tool: sudo apt install hyperfine bubblewrap firejail" >&2; exit 1; }
done

# A running helper of this build, as a desktop session would have.
start_helper "$BIN"
lock=$HELPER_LOCK
"$BIN/hutch" run -- /bin/true

BWRAP="bwrap --unshare-all --die-with-parent --new-session --ro-bind /usr /usr \
 --symlink usr/bin /bin --symlink usr/lib /lib --symlink usr/lib64 /lib64 --symlink usr/sbin /sbin \
 --ro-bind /etc /etc --proc /proc --dev /dev --tmpfs /tmp --tmpfs $HOME --cap-drop ALL /bin/true"
json=$(mktemp)
hyperfine --warmup 20 --runs "$RUNS" -N --export-json "$json" \
    -n bare "/bin/true" \
    -n hutch "$BIN/hutch run -- /bin/true" \
    -n bwrap "$BWRAP" \
    -n firejail "firejail --quiet --noprofile /bin/true"

# A person launches apps with pauses between them: measure that too. The helper prepares the
# next sandbox shortly after each launch; back to back, launches find none ready.
json_paused=$(mktemp)
hyperfine --warmup 10 --runs "$((RUNS / 2))" -N --prepare "sleep 0.1" --export-json "$json_paused" \
    -n hutch "$BIN/hutch run -- /bin/true" \
    -n bwrap "$BWRAP"

python3 - "$json" "$json_paused" <<'PY'
import json, sys
res = {r["command"]: r for r in json.load(open(sys.argv[1]))["results"]}
h = res["hutch"]["mean"]
print()
print(f"{'command':<10} {'mean ms':>9} {'stddev':>8}  hutch / this")
for name in ("bare", "hutch", "bwrap", "firejail"):
    r = res[name]
    print(f"{name:<10} {r['mean']*1000:9.2f} {r['stddev']*1000:8.2f}  {h / r['mean']:6.2f}x")
print(f"\nback to back: hutch/bwrap = {h / res['bwrap']['mean']:.2f} (target: <= 1.00), "
      f"hutch/firejail = {h / res['firejail']['mean']:.2f}")
paused = {r["command"]: r for r in json.load(open(sys.argv[2]))["results"]}
hp, bp = paused["hutch"]["mean"], paused["bwrap"]["mean"]
print(f"with pauses:  hutch {hp*1000:.2f} ms, bwrap {bp*1000:.2f} ms, hutch/bwrap = {hp / bp:.2f}")
PY
kill "$(cat "$lock")" 2>/dev/null || true
