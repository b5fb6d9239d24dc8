# Shared by the benchmarks (sourced). Sandboxes are never measured as root: run as root, a
# benchmark builds Hutch, then runs itself again as the unprivileged test user.

# rerun_as_test_user SCRIPT VAR...: as root, re-executes SCRIPT as `hutch-test`, passing on the
# named variables; as anyone else, returns.
rerun_as_test_user() {
    local script=$1
    shift
    if [ "$(id -u)" -ne 0 ] || [ -n "${HUTCH_BENCH_AS_USER:-}" ]; then
        return 0
    fi
    cargo build --release --locked -p hutch -p hutch-helper
    scripts/ensure-test-user
    local uid rt out var
    local pass=()
    uid=$(id -u hutch-test)
    # A desktop's XDG_RUNTIME_DIR (/run/user/UID) is a tmpfs: so is the benchmarks' when the
    # machine has one at /dev/shm (the sandbox folders and sockets live there).
    rt=/tmp/hutch-bench-runtime-$uid
    if [ "$(stat -f -c %T /dev/shm 2>/dev/null)" = tmpfs ]; then
        rt=/dev/shm/hutch-bench-runtime-$uid
    fi
    install -d -m 0700 -o hutch-test -g hutch-test "$rt"
    out=$(mktemp -d)
    chmod 755 "$out"
    cp bench/* "$out/"
    for var in "$@"; do pass+=("$var=${!var}"); done
    exec runuser -u hutch-test -- env -i HOME="$(getent passwd hutch-test | cut -d: -f6)" \
        USER=hutch-test PATH=/usr/bin:/bin XDG_RUNTIME_DIR="$rt" HUTCH_BENCH_AS_USER=1 \
        HUTCH_BIN="${CARGO_TARGET_DIR:-$PWD/target}/release" "${pass[@]}" \
        bash "$out/$(basename "$script")"
}

# start_helper BIN: stops any helper on this runtime folder, starts one of this build; sets
# HELPER_LOCK.
# In the VM (scripts/vm-test --bench), HUTCH_BENCH_CGROUP names a delegated cgroup for the
# helper, as systemd gives its service one.
start_helper() {
    HELPER_LOCK="$XDG_RUNTIME_DIR/hutch/helper.sock.lock"
    if [ -s "$HELPER_LOCK" ]; then kill "$(cat "$HELPER_LOCK")" 2>/dev/null && sleep 0.3 || true; fi
    if [ -n "${HUTCH_BENCH_CGROUP:-}" ]; then
        mkdir -p "$HUTCH_BENCH_CGROUP"
        sh -c 'echo $$ > "$1/cgroup.procs" && exec "$2" --foreground' sh "$HUTCH_BENCH_CGROUP" \
            "$1/hutch-helper" >/dev/null 2>&1 &
        local i
        for i in $(seq 200); do
            [ -s "$HELPER_LOCK" ] && "$1/hutch" ps >/dev/null 2>&1 && return 0
            sleep 0.05
        done
        echo "the helper did not start" >&2
        return 1
    fi
    "$1/hutch-helper" >/dev/null
}
