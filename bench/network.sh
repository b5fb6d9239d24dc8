#!/usr/bin/env bash
# User-mode networking costs, measured in one run:
#  1. launch time: `hutch run --net user` (each backend) over `--net none`, against the raw
#     start-up of the same stack (bench/raw_stack.py); target: the extra launch time is at most
#     10 ms over the raw start;
#  2. throughput: iperf3 from the sandbox to a server on the host's loopback, through each
#     backend, against the same backend run raw; target: at least 90%.
#
#   bench/network.sh          as a normal user with a subuid range
#   sudo bench/network.sh     as root: builds, then measures as the test user (hutch-test)
#
# Needs: hyperfine, iperf3, slirp4netns, passt (Debian packages). Traffic stays on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
RUNS=${RUNS:-40}
SECONDS_IPERF=${SECONDS_IPERF:-5}

. "$(dirname "$0")/common.sh"
rerun_as_test_user "$0" RUNS SECONDS_IPERF
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=${HUTCH_BIN:-$TARGET_DIR/release}
for tool in hyperfine iperf3 slirp4netns pasta python3; do
    command -v "$tool" >/dev/null || { echo "missing $tool: sudo apt install hyperfine iperf3 slirp4netns passt" >&2; exit 1; }
done
start_helper "$BIN"
lock=$HELPER_LOCK
trap 'kill "$(cat "$lock")" 2>/dev/null || true' EXIT

echo "== launch time (pauses between launches, as a person makes them)"
json=$(mktemp)
hyperfine -N --warmup 5 --runs "$RUNS" --prepare "sleep 0.1" --export-json "$json" \
    -n none "$BIN/hutch run --net none -- /bin/true" \
    -n slirp4netns "$BIN/hutch run --net user --net-backend slirp4netns -- /bin/true" \
    -n pasta "$BIN/hutch run --net user --net-backend pasta -- /bin/true" >/dev/null
raw_slirp=$(python3 "$HERE/raw_stack.py" slirp4netns "$RUNS")
raw_pasta=$(python3 "$HERE/raw_stack.py" pasta "$RUNS")

echo "== throughput (iperf3, ${SECONDS_IPERF}s, sandbox -> host loopback)"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
iperf3 -s -B 127.0.0.1 -p "$port" -D --logfile /dev/null
trap 'kill "$(cat "$lock")" 2>/dev/null || true; pkill -u "$(id -u)" -x iperf3 || true' EXIT
sleep 0.3
gbps() { python3 -c 'import json,sys; d=json.load(sys.stdin); print("%.2f" % (d["end"]["sum_received"]["bits_per_second"] / 1e9))'; }
client="iperf3 -c 10.0.2.2 -p $port -t $SECONDS_IPERF -J"
hutch_tp() { "$BIN/hutch" run --net user --net-backend "$1" --allow-host-loopback -- $client | gbps; }
raw_slirp_tp() {
    unshare -U -r -n sh -c "sleep 0.3; $client" > "$tmp/raw.json" & local ns=$!
    sleep 0.1
    slirp4netns --configure --mtu=65520 "$ns" tap0 >/dev/null 2>&1 & local sl=$!
    wait "$ns"; kill "$sl"; wait "$sl" 2>/dev/null || true
    gbps < "$tmp/raw.json"
}
raw_pasta_tp() {
    pasta --config-net -a 10.0.2.100 -n 24 -g 10.0.2.2 -t none -u none -T none -U none -q -f -- $client | gbps
}
median() { printf '%s\n' "$@" | sort -g | sed -n "$(( ($# + 1) / 2 ))p"; }
tmp=$(mktemp -d)
# Alternate the four measurements, three rounds, and keep each one's median: on a small
# machine single runs vary by a factor of several.
hs=(); rs=(); hp=(); rp=()
for _ in 1 2 3; do
    hs+=("$(hutch_tp slirp4netns)"); rs+=("$(raw_slirp_tp)")
    hp+=("$(hutch_tp pasta)"); rp+=("$(raw_pasta_tp)")
done
echo "   rounds: hutch/slirp4netns ${hs[*]}, raw ${rs[*]}; hutch/pasta ${hp[*]}, raw ${rp[*]} (Gbit/s)"
hutch_slirp=$(median "${hs[@]}"); raw_slirp_tp=$(median "${rs[@]}")
hutch_pasta=$(median "${hp[@]}"); raw_pasta_tp=$(median "${rp[@]}")

python3 - "$json" "$raw_slirp" "$raw_pasta" "$hutch_slirp" "$raw_slirp_tp" "$hutch_pasta" "$raw_pasta_tp" <<'PY'
import json, sys
res = {r["command"]: r["mean"] * 1000 for r in json.load(open(sys.argv[1]))["results"]}
raw = {"slirp4netns": float(sys.argv[2]), "pasta": float(sys.argv[3])}
tp = {"slirp4netns": (float(sys.argv[4]), float(sys.argv[5])),
      "pasta": (float(sys.argv[6]), float(sys.argv[7]))}
print(f"\nlaunch --net none: {res['none']:.2f} ms")
for b in ("slirp4netns", "pasta"):
    extra = res[b] - res["none"]
    print(f"{b:<12} launch {res[b]:6.2f} ms, extra over none {extra:6.2f} ms, raw start "
          f"{raw[b]:6.2f} ms, extra - raw = {extra - raw[b]:6.2f} ms (target <= 10)")
for b in ("slirp4netns", "pasta"):
    h, r = tp[b]
    print(f"{b:<12} throughput hutch {h:6.2f} Gbit/s, raw {r:6.2f} Gbit/s, ratio {h / r:.2f} (target >= 0.90)")
PY
