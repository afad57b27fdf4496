#!/bin/sh
# rrqnet demo: see rrqnet work on this one machine.
#
# Run as root from a checkout:   sudo plugins/demo.sh   (or plugins/demo.sh --keep)
#
# It builds the release binary (cargo is needed; set RRQNET=/path/to/rrqnet
# to use one already built), and installs iproute2 and ping with apt-get
# only if they are missing. Then it makes three network namespaces, a
# "server" and two "clients", joined by veth pairs on an underlay
# 192.0.2.0/24 (the server bridges them, playing the LAN). Each runs an
# rrqnet with a tap in the overlay 198.51.100.0/24, as in the manual's NAT
# example: the server accepts downlinks from 192.0.2.0/24, the clients
# uplink to it. It pings across the tunnel, says what happened, and removes
# everything it made, also on Ctrl-C or failure. With --keep it leaves the
# set-up running until Ctrl-C so you can try things in it.

set -eu

PORT=1400
TAG="rrqdemo$$"
NS_S="$TAG-server"
NS_1="$TAG-client1"
NS_2="$TAG-client2"
KEEP=0
PIDS=""
MADE_NS=""
WORK=""

case "${1:-}" in
--keep) KEEP=1 ;;
"") ;;
-h | --help)
	sed -n '2,15s/^# \{0,1\}//p' "$0"
	exit 0
	;;
*)
	echo "usage: $0 [--keep]" >&2
	exit 2
	;;
esac

say() { printf '%s\n' "$*"; }
die() {
	printf 'demo: %s\n' "$*" >&2
	exit 1
}

cleanup() {
	status=$?
	trap - EXIT INT TERM
	# Only the processes this script started, by PID.
	for pid in $PIDS; do
		kill "$pid" 2>/dev/null || true
	done
	for pid in $PIDS; do
		wait "$pid" 2>/dev/null || true
	done
	for ns in $MADE_NS; do
		ip netns del "$ns" 2>/dev/null || true
	done
	if [ "$status" -eq 1 ] && [ -n "$WORK" ]; then
		for f in "$WORK"/*.log; do
			[ -s "$f" ] || continue
			say "--- $(basename "$f" .log) log ---"
			tail -n 20 "$f"
		done
	fi
	[ -n "$WORK" ] && rm -rf "$WORK"
	[ -n "$MADE_NS" ] && say "cleaned up: namespaces, links and daemons removed"
	exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

[ "$(id -u)" = 0 ] || die "run me as root (namespaces and taps need it)"

# Tools: install only what is missing.
need_pkgs=""
command -v ip >/dev/null 2>&1 || need_pkgs="$need_pkgs iproute2"
command -v ping >/dev/null 2>&1 || need_pkgs="$need_pkgs iputils-ping"
if [ -n "$need_pkgs" ]; then
	command -v apt-get >/dev/null 2>&1 || die "please install:$need_pkgs"
	say "installing:$need_pkgs"
	apt-get install -y $need_pkgs >/dev/null 2>&1 ||
		{ apt-get update >/dev/null && apt-get install -y $need_pkgs >/dev/null; } ||
		die "apt-get install$need_pkgs failed"
fi

# The binary.
REPO=$(cd "$(dirname "$0")/.." && pwd)
if [ -n "${RRQNET:-}" ]; then
	BIN=$RRQNET
else
	CARGO=$(command -v cargo || true)
	[ -z "$CARGO" ] && [ -x "$HOME/.cargo/bin/cargo" ] && CARGO="$HOME/.cargo/bin/cargo"
	[ -n "$CARGO" ] || die "cargo not found: install Rust (https://rustup.rs), or set RRQNET=/path/to/rrqnet"
	say "building rrqnet (release)..."
	(cd "$REPO" && "$CARGO" build --release --quiet) || die "cargo build --release failed"
	BIN="$REPO/target/release/rrqnet"
fi
[ -x "$BIN" ] || die "$BIN is not an executable"

WORK=$(mktemp -d /tmp/rrqnet-demo.XXXXXX)

# Namespaces and the underlay: the server bridges the two veth pairs.
for ns in "$NS_S" "$NS_1" "$NS_2"; do
	ip netns add "$ns"
	MADE_NS="$MADE_NS $ns"
	ip -n "$ns" link set lo up
	# A quiet overlay: no IPv6 chatter on the taps.
	ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
done
ip -n "$NS_S" link add br0 type bridge
ip -n "$NS_S" addr add 192.0.2.1/24 dev br0
ip -n "$NS_S" link set br0 up
n=1
for ns in "$NS_1" "$NS_2"; do
	ip link add "rdm$$s$n" netns "$NS_S" type veth peer name "rdm$$c$n" netns "$ns"
	ip -n "$NS_S" link set "rdm$$s$n" master br0 up
	ip -n "$ns" addr add "192.0.2.$((n + 1))/24" dev "rdm$$c$n"
	ip -n "$ns" link set "rdm$$c$n" up
	n=$((n + 1))
done

# Taps and daemons, as in the manual's NAT example.
start() { # ns overlay-address log-name rrqnet-args...
	ns=$1 addr=$2 name=$3
	shift 3
	ip -n "$ns" tuntap add tap0 mode tap
	ip -n "$ns" addr add "$addr/24" dev tap0
	ip -n "$ns" link set tap0 up
	ip netns exec "$ns" "$BIN" -vv -t tap0 "$@" </dev/null >/dev/null 2>"$WORK/$name.log" &
	PIDS="$PIDS $!"
}
start "$NS_S" 198.51.100.1 server "$PORT" 192.0.2.0/24:$PORT
start "$NS_1" 198.51.100.2 client1 "$PORT" 192.0.2.1:$PORT
start "$NS_2" 198.51.100.3 client2 "$PORT" 192.0.2.1:$PORT

say ""
say "Three hosts (network namespaces) on an underlay LAN 192.0.2.0/24:"
say "  server   192.0.2.1  tap0 198.51.100.1   rrqnet -vv -t tap0 $PORT 192.0.2.0/24:$PORT   (accepts downlinks)"
say "  client1  192.0.2.2  tap0 198.51.100.2   rrqnet -vv -t tap0 $PORT 192.0.2.1:$PORT      (uplink to the server)"
say "  client2  192.0.2.3  tap0 198.51.100.3   rrqnet -vv -t tap0 $PORT 192.0.2.1:$PORT      (uplink to the server)"
say ""

# Wait until every daemon has its tap open.
for name in server client1 client2; do
	i=0
	until grep -q "local end: tap" "$WORK/$name.log" 2>/dev/null; do
		i=$((i + 1))
		[ "$i" -le 50 ] || die "the $name rrqnet did not start"
		sleep 0.1
	done
done

failed=0
ping_across() { # from-ns from-name to-addr to-name how
	i=0
	until ip netns exec "$1" ping -c 1 -W 1 "$3" >/dev/null 2>&1; do
		i=$((i + 1))
		if [ "$i" -ge 10 ]; then
			say "  $2 -> $4 ($3): NO ANSWER $5"
			failed=1
			return 0
		fi
	done
	out=$(ip netns exec "$1" ping -c 3 -i 0.2 -q "$3" 2>&1 || true)
	got=$(printf '%s\n' "$out" | sed -n 's/.* \([0-9]*\) received.*/\1/p')
	avg=$(printf '%s\n' "$out" | sed -n 's|^rtt [^=]*= [^/]*/\([^/]*\)/.*|\1|p')
	say "  $2 -> $4 ($3): ${got:-0}/3 replies, average ${avg:-?} ms $5"
	[ "${got:-0}" -gt 0 ] || failed=1
}
say "Pinging across the tunnel (overlay 198.51.100.0/24, carried in UDP port $PORT):"
ping_across "$NS_1" client1 198.51.100.1 server ""
ping_across "$NS_S" server 198.51.100.3 client2 ""
ping_across "$NS_1" client1 198.51.100.3 client2 "(through the server's switch)"
ping_across "$NS_2" client2 198.51.100.2 client1 "(through the server's switch)"
say ""
ups=$(sed -n 's/.*remote \(.*\) connected.*/\1/p' "$WORK/server.log" | sort -u | tr '\n' ' ')
say "The server's rrqnet saw its downlinks come up: ${ups:-none}"
say "The clients accept UDP only from the server, so client-to-client"
say "frames went through the server's rrqnet, which switches by MAC address."
say ""

if [ "$failed" -ne 0 ]; then
	die "some pings got no answer (logs follow)"
fi
say "rrqnet works."

if [ "$KEEP" = 1 ]; then
	say ""
	say "The set-up stays up until Ctrl-C. Try, in another shell:"
	say "  ip netns exec $NS_1 ping 198.51.100.3"
	say "  ip netns exec $NS_S ip -s link show tap0"
	say "  tail -f $WORK/server.log"
	# wait (not a foreground sleep) so a signal to this script alone ends it.
	while :; do
		sleep 3600 &
		PIDS="$PIDS $!"
		wait $!
	done
fi
