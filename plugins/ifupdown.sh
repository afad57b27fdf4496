#!/bin/bash
# rrqnet-ifupdown: the ifupdown hook that runs an rrqnet plug for an
# interface stanza of /etc/network/interfaces (see rrqnet-ifupdown(8)).
#
# Installed as /etc/rrqnet/ifupdown.sh and linked as rrqnet in
# /etc/network/if-pre-up.d, if-up.d, if-down.d and if-post-down.d.
# Stanzas without an rrqnet_port option are left alone. Options:
#
#   rrqnet_port [notap] PORT   the UDP port (required); with notap no tap is
#                              made and rrqnet runs as a pure switch
#   rrqnet_remote DECL...      a remote declaration (with its -i list);
#                              repeat the line for more remotes
#   rrqnet_options OPTS...     -4, -B n, -T n, -m group:port[=keyfile]
#   rrqnet_log LEVEL PATH      log at -v, -vv or -vvv (or - for warnings
#                              only) to PATH; without it output is discarded
#   rrqnet_nice N              run rrqnet at nice level N
#   rrqnet_bridge BRIDGE       add the tap to BRIDGE
#   rrqnet_binary PATH         the rrqnet to run (default /usr/sbin/rrqnet)
#
# ifup: pre-up makes the tap IFACE (persistent, unless notap) and puts it in
# the bridge; ifupdown then configures it; post-up starts rrqnet detached,
# holding the lock /run/rrqnet/ifupdown.IFACE.lock with its pid in it
# (ifupdown.IFACE.netINODE.lock in a network namespace of its own).
# ifdown: pre-down stops that rrqnet by its pid (SIGTERM, and waits for
# the lock); post-down deletes the tap.

[ -n "${IF_RRQNET_PORT:-}" ] || exit 0
set -u

PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH
RUN_DIR=/run/rrqnet
IFACE=${IFACE:?ifupdown sets IFACE}
# Interface names are per network namespace, /run is not: ifup run in
# another namespace than the host's (ip netns exec) gets that namespace's
# inode in its lock's name.
LOCK=$RUN_DIR/ifupdown.$IFACE.lock
own_ns=$(readlink /proc/self/ns/net 2>/dev/null)
if [ -n "$own_ns" ] && [ "$own_ns" != "$(readlink /proc/1/ns/net 2>/dev/null)" ]; then
	LOCK=$RUN_DIR/ifupdown.$IFACE.net${own_ns//[^0-9]/}.lock
fi
RRQNET=${IF_RRQNET_BINARY:-${RRQNET:-/usr/sbin/rrqnet}}
LOCK_FD=

fail() {
	printf 'rrqnet-ifupdown: %s: %s\n' "$IFACE" "$*" >&2
	exit 1
}

# rrqnet_port [notap] PORT
read -r -a words <<<"$IF_RRQNET_PORT"
TAP=yes
if [ "${words[0]:-}" = notap ]; then
	TAP=no
	words=("${words[@]:1}")
fi
if [ "${#words[@]}" -ne 1 ] || [[ ! ${words[0]} =~ ^[0-9]{1,5}$ ]] ||
	((10#${words[0]} < 1 || 10#${words[0]} > 65535)); then
	fail "rrqnet_port: expected '[notap] PORT' with PORT in 1-65535, got '$IF_RRQNET_PORT'"
fi
PORT=${words[0]}
BRIDGE=${IF_RRQNET_BRIDGE:-}
if [ -n "$BRIDGE" ] && [ "$TAP" = no ]; then
	fail "rrqnet_bridge needs the tap that rrqnet_port notap leaves out"
fi

is_tap() {
	[ -r "/sys/class/net/$1/tun_flags" ] &&
		(($(<"/sys/class/net/$1/tun_flags") & 0x0002))
}

open_lock() {
	if [ ! -d "$RUN_DIR" ] && ! mkdir -m 0755 "$RUN_DIR"; then
		fail "cannot make $RUN_DIR"
	fi
	exec {LOCK_FD}<>"$LOCK" || fail "cannot open $LOCK"
}

# The pid in the lock file, if that process has the lock file open.
lock_holder() {
	local pid fd i
	for ((i = 0; i < 20; i++)); do
		read -r pid <"$LOCK" 2>/dev/null || pid=
		if [[ $pid =~ ^[0-9]+$ ]]; then
			for fd in /proc/"$pid"/fd/*; do
				if [ "$(readlink "$fd" 2>/dev/null)" = "$LOCK" ]; then
					printf '%s' "$pid"
					return 0
				fi
			done
		fi
		sleep 0.1
	done
	return 1
}

# Leaves the daemon only stdin/stdout/stderr and the lock: ifupdown's own
# descriptors must not outlive ifup in a daemon.
close_other_fds() {
	local fd
	shopt -s nullglob
	for fd in /proc/"$BASHPID"/fd/*; do
		fd=${fd##*/}
		if ((fd > 2)) && [ "$fd" != "$LOCK_FD" ]; then
			eval "exec $fd>&-" 2>/dev/null
		fi
	done
}

make_tap() {
	[ "$TAP" = yes ] || return 0
	local out
	if [ -e "/sys/class/net/$IFACE" ]; then
		is_tap "$IFACE" || fail "exists and is not a tap (use rrqnet_port notap PORT for a pure switch)"
	elif ! out=$(ip tuntap add dev "$IFACE" mode tap 2>&1); then
		fail "cannot create the tap: $out"
	fi
	if [ -n "$BRIDGE" ]; then
		[ -d "/sys/class/net/$BRIDGE/bridge" ] || fail "rrqnet_bridge $BRIDGE is not an existing bridge"
		out=$(ip link set dev "$IFACE" master "$BRIDGE" 2>&1) || fail "cannot add it to $BRIDGE: $out"
	fi
}

start_rrqnet() {
	local args=() opts=() remotes=() line level=- log=/dev/null nice=() w i
	if [ -n "${IF_RRQNET_LOG:-}" ]; then
		read -r -a w <<<"$IF_RRQNET_LOG"
		if [ "${#w[@]}" -ne 2 ] || [[ ! ${w[0]} =~ ^(-|-v|-vv|-vvv)$ ]] || [ "${w[1]:0:1}" != / ]; then
			fail "rrqnet_log: expected 'LEVEL PATH' with LEVEL -, -v, -vv or -vvv and an absolute PATH, got '$IF_RRQNET_LOG'"
		fi
		level=${w[0]}
		log=${w[1]}
	fi
	if [ -n "${IF_RRQNET_NICE:-}" ]; then
		local niceness=
		if [[ $IF_RRQNET_NICE =~ ^(-?)([0-9]{1,2})$ ]]; then
			niceness=$((${BASH_REMATCH[1]}10#${BASH_REMATCH[2]}))
		fi
		if [ -z "$niceness" ] || ((niceness < -20 || niceness > 19)); then
			fail "rrqnet_nice: '$IF_RRQNET_NICE' is not a nice level (-20 to 19)"
		fi
		# nice -n adds to the caller's niceness; the option is the level itself.
		nice=(nice -n "$((niceness - $(nice)))")
	fi
	read -r -a opts <<<"${IF_RRQNET_OPTIONS:-}"
	for ((i = 0; i < ${#opts[@]}; i++)); do
		case "${opts[i]}" in
		-4 | --join-udp) ;;
		-B | -T | -m) i=$((i + 1)) ;;
		*) fail "rrqnet_options: '${opts[i]}' is not one of -4, -B n, -T n, -m group:port[=keyfile], --join-udp" ;;
		esac
	done
	while IFS= read -r line; do
		read -r -a w <<<"$line"
		remotes+=("${w[@]}")
	done <<<"${IF_RRQNET_REMOTE:-}"

	[ "$level" = - ] || args+=("$level")
	args+=("${opts[@]}")
	[ "$TAP" = yes ] && args+=(-t "$IFACE")
	args+=("$PORT" "${remotes[@]}")

	[ -x "$RRQNET" ] || fail "$RRQNET is not an executable (rrqnet_binary PATH names another)"
	open_lock
	if ! flock -n "$LOCK_FD"; then
		fail "rrqnet is already running for it (pid $(lock_holder || echo unknown))"
	fi
	(umask 027 && : >>"$log") 2>/dev/null || fail "rrqnet_log: cannot write $log"
	(
		cd / || exit 1
		close_other_fds
		exec setsid "${nice[@]}" "$RRQNET" "${args[@]}" </dev/null >>"$log" 2>&1
	) &
	local pid=$! st
	printf '%s\n' "$pid" >"$LOCK"
	for ((i = 0; i < 5; i++)); do
		sleep 0.1
		kill -0 "$pid" 2>/dev/null || break
	done
	if ! kill -0 "$pid" 2>/dev/null; then
		wait "$pid"
		st=$?
		rm -f "$LOCK"
		if [ "$log" = /dev/null ]; then
			fail "rrqnet exited at once with status $st (add 'rrqnet_log -v PATH' to see why): $RRQNET ${args[*]}"
		fi
		fail "rrqnet exited at once with status $st: $(tail -n 1 "$log")"
	fi
}

stop_rrqnet() {
	[ -e "$LOCK" ] || return 0
	open_lock
	if flock -n "$LOCK_FD"; then
		rm -f "$LOCK"
		return 0
	fi
	local pid
	pid=$(lock_holder) || fail "$LOCK is held, but not by the process it names; not stopping anything"
	kill -TERM "$pid" 2>/dev/null
	if ! flock -w 10 "$LOCK_FD"; then
		kill -KILL "$pid" 2>/dev/null
		flock -w 5 "$LOCK_FD" || fail "rrqnet (pid $pid) does not stop"
	fi
	# Removed while we hold the lock: ifupdown runs one stanza at a time.
	rm -f "$LOCK"
}

remove_tap() {
	[ "$TAP" = yes ] || return 0
	if is_tap "$IFACE"; then
		local out
		out=$(ip link del dev "$IFACE" 2>&1) || fail "cannot delete the tap: $out"
	fi
}

case "${MODE:-}/${PHASE:-}" in
start/pre-up) make_tap ;;
start/post-up) start_rrqnet ;;
stop/pre-down) stop_rrqnet ;;
stop/post-down) remove_tap ;;
esac
exit 0
