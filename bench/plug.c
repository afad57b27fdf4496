/*
 * A minimal tap <-> UDP plug, for bench/rttcause: the round trip and CPU a
 * ping costs when a daemon does nothing but move the frame, with either
 * system-call set:
 *
 *   rrqnet  the calls rrqnet makes, set up as rrqnet sets them up: the tap
 *           opened with a virtio-net header (IFF_VNET_HDR, 10 bytes) and
 *           checksum and TCP/UDP segmentation offloads; a dual-stack IPv6
 *           UDP socket with UDP_GRO, sending to the v4-mapped address;
 *           edge-triggered epoll with a timeout; the tap read until EAGAIN;
 *           sendmmsg; recvmmsg of up to 32 with a control buffer; writev of
 *           header and frame.
 *   vde     the calls vde_plug udp:// makes: a plain tap, an IPv4 socket,
 *           poll, one read, sendto, recvfrom, write.
 *
 * After the set, a comma-separated list of elements of rrqnet's set to make
 * the vde_plug way instead, one at a time or together:
 *
 *   vnet      a plain tap (no header, no offloads; write instead of writev)
 *   offload   the header but no offloads
 *   gro       no UDP_GRO
 *   v4        an IPv4 socket
 *   poll      poll instead of epoll; with it, oneread
 *   oneread   one read and one receive a wake-up (epoll level-triggered)
 *             instead of reading each until EAGAIN
 *   sendto    sendto per frame instead of sendmmsg
 *   recvfrom  recvfrom per datagram instead of recvmmsg
 *   timeout   no timeout on the wait
 *
 * Frames are not looked at: what comes from the tap goes to REMOTE, what
 * comes from the socket goes to the tap. It serves only the benchmark's
 * two-namespace tunnel; it is not a switch.
 *
 * usage: plug rrqnet|vde TAP PORT REMOTE-IPV4 [ELEMENT,...]
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#ifndef UDP_GRO
#define UDP_GRO 104
#endif
#define VNET 10
#define BATCH 32
#define FRAME 65536
#define TUN_F_USO 0x60 /* TUN_F_USO4 | TUN_F_USO6, Linux 6.2 */

/* What the plug does the rrqnet way (true) or the vde_plug way (false). */
struct set {
	bool vnet, offload, gro, v6, epoll, drain, sendmmsg, recvmmsg, timeout;
};

static const struct {
	const char *name;
	size_t offset;
} elements[] = {
	{ "vnet", offsetof(struct set, vnet) },
	{ "offload", offsetof(struct set, offload) },
	{ "gro", offsetof(struct set, gro) },
	{ "v4", offsetof(struct set, v6) },
	{ "poll", offsetof(struct set, epoll) },
	{ "oneread", offsetof(struct set, drain) },
	{ "sendto", offsetof(struct set, sendmmsg) },
	{ "recvfrom", offsetof(struct set, recvmmsg) },
	{ "timeout", offsetof(struct set, timeout) },
};

static unsigned char bufs[BATCH][FRAME];

static void die(const char *what)
{
	perror(what);
	exit(1);
}

static void usage(void)
{
	fprintf(stderr, "usage: plug rrqnet|vde TAP PORT REMOTE-IPV4 [ELEMENT,...]\n");
	exit(2);
}

/* Takes each listed element of the set the vde_plug way. */
static void take_vde_way(struct set *s, char *list)
{
	for (char *e = strtok(list, ","); e; e = strtok(NULL, ",")) {
		size_t i;

		for (i = 0; i < sizeof elements / sizeof elements[0]; i++)
			if (!strcmp(e, elements[i].name))
				break;
		if (i == sizeof elements / sizeof elements[0]) {
			fprintf(stderr, "plug: unknown element %s\n", e);
			usage();
		}
		*(bool *)((char *)s + elements[i].offset) = false;
		if (!strcmp(e, "poll"))
			s->drain = false; /* poll is level-triggered: one read */
		if (!strcmp(e, "vnet"))
			s->offload = false;
	}
}

static int open_tap(const char *name, const struct set *s)
{
	struct ifreq ifr;
	int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK);

	if (fd < 0)
		die("/dev/net/tun");
	memset(&ifr, 0, sizeof ifr);
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI | (s->vnet ? IFF_VNET_HDR : 0);
	snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", name);
	if (ioctl(fd, TUNSETIFF, &ifr) < 0)
		die("TUNSETIFF");
	if (s->vnet) {
		int size = VNET;
		unsigned long tso = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6;

		if (ioctl(fd, TUNSETVNETHDRSZ, &size) < 0)
			die("TUNSETVNETHDRSZ");
		if (s->offload && ioctl(fd, TUNSETOFFLOAD, tso | TUN_F_USO) < 0 && ioctl(fd, TUNSETOFFLOAD, tso) < 0)
			die("TUNSETOFFLOAD");
	}
	return fd;
}

/* The socket, bound to PORT, and the remote's address as it sends to it. */
static int open_socket(const struct set *s, int port, struct in_addr remote, struct sockaddr_storage *to,
		       socklen_t *tolen)
{
	int one = 1, off = 0, fd;

	memset(to, 0, sizeof *to);
	if (s->v6) {
		struct sockaddr_in6 me = { .sin6_family = AF_INET6, .sin6_port = htons(port) };
		struct sockaddr_in6 *t = (struct sockaddr_in6 *)to;

		fd = socket(AF_INET6, SOCK_DGRAM | SOCK_NONBLOCK, IPPROTO_UDP);
		if (fd < 0 || setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off) < 0 ||
		    bind(fd, (struct sockaddr *)&me, sizeof me) < 0)
			die("socket");
		t->sin6_family = AF_INET6;
		t->sin6_port = htons(port);
		t->sin6_addr.s6_addr[10] = t->sin6_addr.s6_addr[11] = 0xff;
		memcpy(&t->sin6_addr.s6_addr[12], &remote, 4);
		*tolen = sizeof *t;
	} else {
		struct sockaddr_in me = { .sin_family = AF_INET, .sin_port = htons(port) };
		struct sockaddr_in *t = (struct sockaddr_in *)to;

		fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, IPPROTO_UDP);
		if (fd < 0 || bind(fd, (struct sockaddr *)&me, sizeof me) < 0)
			die("socket");
		t->sin_family = AF_INET;
		t->sin_port = htons(port);
		t->sin_addr = remote;
		*tolen = sizeof *t;
	}
	if (s->gro && setsockopt(fd, IPPROTO_UDP, UDP_GRO, &one, sizeof one) < 0)
		die("UDP_GRO");
	return fd;
}

/* Writes one frame to the tap, behind a zero header if it has one. */
static void to_tap(int tap, const struct set *s, unsigned char *frame, size_t len)
{
	static const unsigned char zero[VNET];
	struct iovec w[2] = { { (void *)zero, VNET }, { frame, len } };
	ssize_t r = s->vnet ? writev(tap, w, 2) : write(tap, frame, len);

	if (r < 0 && errno != EAGAIN)
		die("write to the tap");
}

/* Frames from the tap to the remote: until EAGAIN, or once. */
static void tap_to_socket(int tap, int sock, const struct set *s, struct sockaddr_storage *to, socklen_t tolen)
{
	size_t hdr = s->vnet ? VNET : 0;
	struct mmsghdr msgs[BATCH];
	struct iovec iov[BATCH];
	int got;

	do {
		ssize_t len;

		got = 0;
		while (got < BATCH && (len = read(tap, bufs[got], FRAME)) > (ssize_t)hdr) {
			iov[got] = (struct iovec){ bufs[got] + hdr, (size_t)len - hdr };
			msgs[got] = (struct mmsghdr){ .msg_hdr = { .msg_name = to, .msg_namelen = tolen,
								   .msg_iov = &iov[got], .msg_iovlen = 1 } };
			got++;
			if (!s->drain)
				break;
		}
		/* A send the kernel refuses is dropped, as a full socket would. */
		if (s->sendmmsg && got)
			sendmmsg(sock, msgs, got, MSG_DONTWAIT);
		for (int k = 0; !s->sendmmsg && k < got; k++)
			sendto(sock, iov[k].iov_base, iov[k].iov_len, MSG_DONTWAIT, (struct sockaddr *)to, tolen);
	} while (s->drain && got == BATCH);
}

/* Datagrams from the socket to the tap: until EAGAIN, or once. */
static void socket_to_tap(int tap, int sock, const struct set *s)
{
	struct sockaddr_in6 from[BATCH];
	struct mmsghdr msgs[BATCH];
	struct iovec iov[BATCH];
	unsigned long long cmsg[BATCH][4];

	if (!s->recvmmsg) {
		ssize_t len;

		while ((len = recvfrom(sock, bufs[0], FRAME, MSG_DONTWAIT, NULL, NULL)) >= 0) {
			to_tap(tap, s, bufs[0], len);
			if (!s->drain)
				break;
		}
		return;
	}
	for (;;) {
		int got;

		for (int k = 0; k < BATCH; k++) {
			iov[k] = (struct iovec){ bufs[k], FRAME };
			msgs[k] = (struct mmsghdr){ .msg_hdr = { .msg_name = &from[k], .msg_namelen = sizeof from[k],
								 .msg_iov = &iov[k], .msg_iovlen = 1,
								 .msg_control = cmsg[k], .msg_controllen = sizeof cmsg[k] } };
		}
		got = recvmmsg(sock, msgs, BATCH, MSG_DONTWAIT, NULL);
		for (int k = 0; k < got; k++)
			to_tap(tap, s, bufs[k], msgs[k].msg_len);
		if (got < BATCH)
			return;
	}
}

int main(int argc, char **argv)
{
	struct set s = { true, true, true, true, true, true, true, true, true };
	struct sockaddr_storage to;
	socklen_t tolen;
	struct in_addr remote;
	struct epoll_event ev[2];
	int tap, sock, ep = -1, timeout;

	if (argc < 5 || argc > 6 || inet_pton(AF_INET, argv[4], &remote) != 1)
		usage();
	if (!strcmp(argv[1], "vde"))
		s = (struct set){ 0 };
	else if (strcmp(argv[1], "rrqnet"))
		usage();
	if (argc == 6)
		take_vde_way(&s, argv[5]);
	tap = open_tap(argv[2], &s);
	sock = open_socket(&s, atoi(argv[3]), remote, &to, &tolen);
	timeout = s.timeout ? 1000 : -1;
	if (s.epoll) {
		ep = epoll_create1(0);
		/* Edge-triggered when each wake-up is read until EAGAIN. */
		ev[0] = (struct epoll_event){ .events = EPOLLIN | (s.drain ? EPOLLET : 0), .data.u64 = 0 };
		ev[1] = (struct epoll_event){ .events = EPOLLIN | (s.drain ? EPOLLET : 0), .data.u64 = 1 };
		if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, tap, &ev[0]) < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, sock, &ev[1]) < 0)
			die("epoll");
	}
	for (;;) {
		bool from_tap = false, from_socket = false;

		if (s.epoll) {
			int n = epoll_wait(ep, ev, 2, timeout);

			for (int i = 0; i < n; i++)
				*(ev[i].data.u64 ? &from_socket : &from_tap) = true;
		} else {
			struct pollfd fds[2] = { { .fd = tap, .events = POLLIN }, { .fd = sock, .events = POLLIN } };

			if (poll(fds, 2, timeout) < 0 && errno != EINTR)
				die("poll");
			from_tap = fds[0].revents & POLLIN;
			from_socket = fds[1].revents & POLLIN;
		}
		if (from_tap)
			tap_to_socket(tap, sock, &s, &to, tolen);
		if (from_socket)
			socket_to_tap(tap, sock, &s);
	}
}
