#!/usr/bin/env bash
# Pictures of the real app: starts the real helper and the real window under Xvfb, runs a few
# real sandboxed processes, and captures the main view, the details view with live graphs and
# the settings panel into screenshots/*.png. Needs xvfb, xdotool and imagemagick.
#
# Run from the repository root, as root. The pictures show Hutch as a user with delegated
# cgroups sees it (limits on, pressure graphs, pause): they are taken in the cgroup v2 VM
# (scripts/vm-test --shots, release build). HUTCH_SHOTS_HOST=1 takes them on this machine
# instead, as the unprivileged test user, with whatever cgroups it has.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -eq 0 ] && [ -z "${HUTCH_SHOTS_AS_USER:-}" ] && [ "${HUTCH_SHOTS_HOST:-}" != 1 ]; then
    out=$(mktemp -d)
    chmod 777 "$out"
    scripts/vm-test --shots "$out"
    for shot in main-view details-view settings-panel; do
        [ -s "$out/$shot.png" ] || { echo "take.sh: the VM made no $shot.png" >&2; exit 1; }
    done
    cp "$out"/*.png screenshots/
    rm -rf "$out"
    ls -l screenshots/*.png
    exit 0
fi
if [ "$(id -u)" -eq 0 ] && [ -z "${HUTCH_SHOTS_AS_USER:-}" ]; then
    cargo build --locked -p hutch -p hutch-helper
    scripts/ensure-test-user
    uid=$(id -u hutch-test)
    rt=/tmp/hutch-shots-runtime-$uid
    install -d -m 0700 -o hutch-test -g hutch-test "$rt"
    out=$(mktemp -d)
    chmod 777 "$out"
    runuser -u hutch-test -- env -i HOME="$(getent passwd hutch-test | cut -d: -f6)" \
        USER=hutch-test PATH=/usr/bin:/bin XDG_RUNTIME_DIR="$rt" HUTCH_SHOTS_AS_USER=1 \
        HUTCH_BIN="${CARGO_TARGET_DIR:-$PWD/target}/debug" SHOTS_OUT="$out" \
        bash "$PWD/screenshots/take.sh"
    cp "$out"/*.png screenshots/
    rm -rf "$out"
    ls -l screenshots/*.png
    exit 0
fi
BIN=${HUTCH_BIN:-target/debug}
OUT=${SHOTS_OUT:-screenshots}
# A helper of another build may still serve this runtime folder: this build's must answer.
lock="$XDG_RUNTIME_DIR/hutch/helper.sock.lock"
if [ -s "$lock" ]; then kill "$(cat "$lock")" 2>/dev/null && sleep 0.5 || true; fi
# In the VM: the helper starts in a delegated cgroup of its own, as systemd starts its service.
if [ -n "${HUTCH_SHOTS_CGROUP:-}" ]; then
    mkdir -p "$HUTCH_SHOTS_CGROUP"
    sh -c 'echo $$ > "$1/cgroup.procs" && exec "$2" --foreground' sh "$HUTCH_SHOTS_CGROUP" \
        "$BIN/hutch-helper" >/dev/null 2>&1 &
    for _ in $(seq 300); do "$BIN/hutch" ps >/dev/null 2>&1 && break; sleep 0.1; done
    "$BIN/hutch" doctor | grep -i cgroup || true
fi
display=:$((90 + RANDOM % 20))
Xvfb "$display" -screen 0 1120x720x24 -nolisten tcp >/dev/null 2>&1 &
xvfb=$!
ids=()
window=
cleanup() {
    [ -n "$window" ] && kill "$window" 2>/dev/null || true
    for id in "${ids[@]}"; do "$BIN/hutch" stop --grace 0 "$id" >/dev/null 2>&1 || true; done
    kill "$xvfb" 2>/dev/null || true
}
trap cleanup EXIT
export DISPLAY=$display
sleep 1

# A profile for the settings picture, and real sandboxed work to watch.
profiles=${XDG_CONFIG_HOME:-$HOME/.config}/hutch/profiles
mkdir -p "$profiles"
cat >"$profiles/number-cruncher.toml" <<'TOML'
description = "A CPU-hungry script I downloaded"
command = ["python3", "-c", "while True: sum(i * i for i in range(10**5))"]
home = "tmp"
network = "none"

[limits]
memory = "256M"
cpu = "50%"
pids = 64

[[share]]
path = "~/Documents"
mode = "ro"
TOML
mkdir -p "$HOME/Documents"
ids+=("$("$BIN/hutch" run --detach --profile number-cruncher)")
ids+=("$("$BIN/hutch" run --detach --memory 512M --cpu-weight 50 -- python3 -c 'import time
blocks = []
while True:
    blocks.append(bytearray(4 << 20)); print("holding", len(blocks) * 4, "MiB", flush=True); time.sleep(1)')")
ids+=("$("$BIN/hutch" run --detach -- sh -c 'while :; do echo tick; sleep 2; done')")
"$BIN/hutch" run --detach -- sh -c 'echo "cannot open config: No such file"; exit 1' >/dev/null

shot() { # NAME SHOW
    HUTCH_GUI_SHOW=$2 "$BIN/hutch" >/dev/null 2>&1 &
    window=$!
    for _ in $(seq 600); do xdotool search --name '^Hutch$' >/dev/null 2>&1 && break; sleep 0.2; done
    sleep "${3:-4}"
    xdotool mousemove 1110 710
    sleep 0.5
    import -window root "$OUT/$1.png"
    kill "$window"; wait "$window" 2>/dev/null || true
    window=
}
sleep 6
# Under software emulation (the VM) a first frame takes seconds: wait longer there.
wait=${HUTCH_SHOTS_CGROUP:+20}
shot main-view "" "${wait:-4}"
shot details-view details 20
shot settings-panel profile:number-cruncher "${wait:-4}"
echo "wrote $OUT/main-view.png $OUT/details-view.png $OUT/settings-panel.png"
