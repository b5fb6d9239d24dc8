#!/usr/bin/env bash
# Launch time with every hardening layer on (Landlock, the seccomp filters, the takeover
# socket, the masked boot id), at a person's cadence (100 ms between launches), against bwrap
# in the same run, and against a baseline build of Hutch when one is given, with the
# breakdown of where the time goes.
#
#   bench/hardening.sh                       as a user with a subuid range
#   sudo bench/hardening.sh                  as root: builds, then measures as hutch-test
#   HUTCH_BASELINE=DIR bench/hardening.sh    DIR holds hutch and hutch-helper of another
#                                            build (e.g. the engine issue's commit), measured
#                                            in the same run on a runtime folder of its own
#
# The engine issue's figure (bench/startup.sh, with pauses): hutch/bwrap 0.89-0.94.
# Target: within 10% of it, i.e. hutch/bwrap <= 1.03; with a baseline, now/baseline <= 1.10.
#
# Needs: hyperfine, bubblewrap (Debian packages). Release build of Hutch.
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
RUNS=${RUNS:-200}
HUTCH_BASELINE=${HUTCH_BASELINE:-}

. "$(dirname "$0")/common.sh"
rerun_as_test_user "$0" RUNS HUTCH_BASELINE

BIN=${HUTCH_BIN:-$TARGET_DIR/release}
for tool in hyperfine bwrap; do
    command -v "$tool" >/dev/null || { echo "missing $tool: sudo apt install hyperfine bubblewrap" >&2; exit 1; }
done

start_helper "$BIN"
"$BIN/hutch" run -- true
commands=(-n hutch "env XDG_RUNTIME_DIR=$XDG_RUNTIME_DIR $BIN/hutch run -- true")
if [ -n "$HUTCH_BASELINE" ]; then
    # Beside ours, on the same kind of file system.
    base_rt=$(mktemp -d -p "$(dirname "$XDG_RUNTIME_DIR")")
    XDG_RUNTIME_DIR=$base_rt "$HUTCH_BASELINE/hutch-helper" >/dev/null
    XDG_RUNTIME_DIR=$base_rt "$HUTCH_BASELINE/hutch" run -- true
    commands+=(-n baseline "env XDG_RUNTIME_DIR=$base_rt $HUTCH_BASELINE/hutch run -- true")
fi
BWRAP="bwrap --unshare-all --die-with-parent --new-session --ro-bind /usr /usr \
 --symlink usr/bin /bin --symlink usr/lib /lib --symlink usr/lib64 /lib64 --symlink usr/sbin /sbin \
 --ro-bind /etc /etc --proc /proc --dev /dev --tmpfs /tmp --tmpfs $HOME --cap-drop ALL /bin/true"
# `env` in front of every command, so each pays the same extra exec.
commands+=(-n bwrap "env $BWRAP")

json=$(mktemp)
hyperfine --warmup 10 --runs "$RUNS" -N --prepare "sleep 0.1" --export-json "$json" "${commands[@]}" >/dev/null
# The CLI's own start (the window is linked into the same binary) against the helper's.
json_start=$(mktemp)
start_commands=(-n cli "$BIN/hutch --version" -n helper "$BIN/hutch-helper --version")
if [ -n "$HUTCH_BASELINE" ]; then
    start_commands+=(-n baseline-cli "$HUTCH_BASELINE/hutch --version")
fi
hyperfine --warmup 20 --runs 300 -N --export-json "$json_start" "${start_commands[@]}" >/dev/null
landlock=$(id=$("$BIN/hutch" run --detach -- sleep 5) && sleep 0.3 && "$BIN/hutch" inspect "$id" | sed -n 's/^ *landlock: //p'; "$BIN/hutch" stop --grace 0 "$id" >/dev/null 2>&1 || true)

python3 - "$json" "$json_start" "$landlock" <<'PY'
import json, sys
res = {r["command"]: r for r in json.load(open(sys.argv[1]))["results"]}
start = {r["command"]: r["mean"] for r in json.load(open(sys.argv[2]))["results"]}
h, b = res["hutch"]["mean"], res["bwrap"]["mean"]
print(f"{'command':<10} {'mean ms':>9} {'stddev':>8}")
for name, r in res.items():
    print(f"{name:<10} {r['mean']*1000:9.2f} {r['stddev']*1000:8.2f}")
print(f"\nhutch/bwrap = {h / b:.2f}  (engine issue: 0.89-0.94; target <= 1.03)")
if "baseline" in res:
    base = res["baseline"]["mean"]
    print(f"hutch/baseline = {h / base:.2f}  (target <= 1.10)")
print(f"start of the CLI binary: {start['cli']*1000:.2f} ms, of the helper binary: "
      f"{start['helper']*1000:.2f} ms (difference {1000*(start['cli']-start['helper']):.2f} ms)")
if "baseline" in res:
    # The window is linked into the CLI binary since the engine issue: the launch without each
    # build's own CLI start is what the sandbox layers cost.
    bs = start["baseline-cli"]
    print(f"start of the baseline's CLI binary: {bs*1000:.2f} ms; launch without each CLI's "
          f"start: {1000*(h-start['cli']):.2f} vs {1000*(base-bs):.2f} ms = "
          f"{(h - start['cli']) / (base - bs):.2f}")
print(f"Landlock: {sys.argv[3]}")
PY
kill "$(cat "$HELPER_LOCK")" 2>/dev/null || true
[ -n "$HUTCH_BASELINE" ] && kill "$(cat "$base_rt/hutch/helper.sock.lock")" 2>/dev/null || true
