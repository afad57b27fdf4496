# shellcheck shell=bash
# The two-namespace tunnel that bench/profile, syscalls, wakeups, udp64,
# udpjoin and footprint measure (bench/run builds its own, for many peers). Sourced, not
# run; the caller has `set -euo pipefail`, BIN (an rrqnet binary) and a trap
# that calls pair_down.
#
#   ns A                                 ns B
#   tap0 198.51.100.1/24  <-- tunnel --> tap0 198.51.100.2/24   (MTU 1400)
#   192.0.2.1/24  ========== veth ========== 192.0.2.2/24

pids=()
RRQ_ARGS=("${RRQ_ARGS[@]+"${RRQ_ARGS[@]}"}")

# pair_up TAG: namespaces A and B (TAG, the shell's pid, a or b), the veth
# between them and a tap in each, all up.
pair_up() {
    A=$1$$a; B=$1$$b
    ip netns add "$A"; ip netns add "$B"
    ip link add "$1a$$" netns "$A" type veth peer name "$1b$$" netns "$B"
    ip -n "$A" addr add 192.0.2.1/24 dev "$1a$$"; ip -n "$B" addr add 192.0.2.2/24 dev "$1b$$"
    ip -n "$A" link set "$1a$$" up; ip -n "$B" link set "$1b$$" up
    for n in "$A" "$B"; do
        ip -n "$n" link set lo up
        ip -n "$n" tuntap add tap0 mode tap; ip -n "$n" link set tap0 mtu 1400 up
    done
    ip -n "$A" addr add 198.51.100.1/24 dev tap0; ip -n "$B" addr add 198.51.100.2/24 dev tap0
}

# pair_daemons rrqnet|vde: the tunnel, rrqnet (BIN, with the options in
# the array RRQ_ARGS, none by default) or vde_plug udp:// on each tap, over
# UDP port 2300; A's command runs under "${A_WRAP[@]}" when that is set (a
# profiler). Their pids (`ip netns exec` execs, so these are
# the daemons' own) in PA and PB, and in pids. Waits until a ping crosses.
pair_daemons() {
    local wrap=("${A_WRAP[@]+"${A_WRAP[@]}"}")
    if [ "$1" = vde ]; then
        ip netns exec "$A" "${wrap[@]}" vde_plug "udp://2300->192.0.2.2:2300" tap://tap0 & PA=$!
        ip netns exec "$B" vde_plug "udp://2300->192.0.2.1:2300" tap://tap0 & PB=$!
    else
        ip netns exec "$A" "${wrap[@]}" "$BIN" -t tap0 "${RRQ_ARGS[@]}" 2300 192.0.2.2:2300 & PA=$!
        ip netns exec "$B" "$BIN" -t tap0 "${RRQ_ARGS[@]}" 2300 192.0.2.1:2300 & PB=$!
    fi
    pids+=("$PA" "$PB")
    local _
    for _ in $(seq 60); do
        ip netns exec "$A" ping -c 1 -W 1 -q 198.51.100.2 >/dev/null 2>&1 && return 0
        sleep 0.25
    done
    echo "bench: the $1 tunnel did not come up" >&2
    return 1
}

# pair_down: ends every process in pids (by pid) and deletes the namespaces.
pair_down() {
    local p
    for p in "${pids[@]+"${pids[@]}"}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]+"${pids[@]}"}"; do wait "$p" 2>/dev/null || true; done
    pids=()
    if [ -n "${A:-}" ]; then ip netns del "$A" 2>/dev/null || true; fi
    if [ -n "${B:-}" ]; then ip netns del "$B" 2>/dev/null || true; fi
}
