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
 * Frames are not looked at: what comes from the tap goes to REMOTE, what
 * comes from the socket goes to the tap. It serves only the benchmark's
 * two-namespace tunnel; it is not a switch.
 *
 * usage: plug rrqnet|vde TAP PORT REMOTE-IPV4
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <poll.h>
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

static void die(const char *what)
{
	perror(what);
	exit(1);
}

static int open_tap(const char *name, int vnet)
{
	struct ifreq ifr;
	int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK);

	if (fd < 0)
		die("/dev/net/tun");
	memset(&ifr, 0, sizeof ifr);
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI | (vnet ? IFF_VNET_HDR : 0);
	snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", name);
	if (ioctl(fd, TUNSETIFF, &ifr) < 0)
		die("TUNSETIFF");
	if (vnet) {
		int size = VNET;
		unsigned long off = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6;

		if (ioctl(fd, TUNSETVNETHDRSZ, &size) < 0)
			die("TUNSETVNETHDRSZ");
		if (ioctl(fd, TUNSETOFFLOAD, off | 0x20 | 0x40) < 0 && ioctl(fd, TUNSETOFFLOAD, off) < 0)
			die("TUNSETOFFLOAD");
	}
	return fd;
}

static unsigned char bufs[BATCH][FRAME];

/* rrqnet's calls. */
static void run_rrqnet(int tap, int port, struct in_addr remote)
{
	static const unsigned char zero[VNET];
	struct sockaddr_in6 me = { .sin6_family = AF_INET6, .sin6_port = htons(port) };
	struct sockaddr_in6 to = { .sin6_family = AF_INET6, .sin6_port = htons(port) };
	struct sockaddr_in6 from[BATCH];
	struct mmsghdr msgs[BATCH];
	struct iovec iov[BATCH];
	unsigned long long cmsg[BATCH][4];
	struct epoll_event ev[64];
	int one = 1, off = 0, ep, sock;

	sock = socket(AF_INET6, SOCK_DGRAM | SOCK_NONBLOCK, IPPROTO_UDP);
	if (sock < 0 || setsockopt(sock, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off) < 0)
		die("socket");
	if (bind(sock, (struct sockaddr *)&me, sizeof me) < 0)
		die("bind");
	if (setsockopt(sock, IPPROTO_UDP, UDP_GRO, &one, sizeof one) < 0)
		die("UDP_GRO");
	to.sin6_addr.s6_addr[10] = to.sin6_addr.s6_addr[11] = 0xff;
	memcpy(&to.sin6_addr.s6_addr[12], &remote, 4);
	ep = epoll_create1(0);
	if (ep < 0)
		die("epoll_create1");
	ev[0] = (struct epoll_event){ .events = EPOLLIN | EPOLLET, .data.u64 = 0 };
	ev[1] = (struct epoll_event){ .events = EPOLLIN | EPOLLET, .data.u64 = 1 };
	if (epoll_ctl(ep, EPOLL_CTL_ADD, tap, &ev[0]) < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, sock, &ev[1]) < 0)
		die("epoll_ctl");
	for (;;) {
		int n = epoll_wait(ep, ev, 64, 1000);

		for (int i = 0; i < n; i++) {
			if (ev[i].data.u64 == 0) {
				int got;
				ssize_t len;

				/* Until EAGAIN; a send the kernel refuses is dropped. */
				do {
					got = 0;
					while (got < BATCH && (len = read(tap, bufs[got], FRAME)) > VNET) {
						iov[got] = (struct iovec){ bufs[got] + VNET, (size_t)len - VNET };
						msgs[got] = (struct mmsghdr){ .msg_hdr = {
							.msg_name = &to, .msg_namelen = sizeof to, .msg_iov = &iov[got],
							.msg_iovlen = 1 } };
						got++;
					}
					if (got)
						sendmmsg(sock, msgs, got, MSG_DONTWAIT);
				} while (got == BATCH);
			} else {
				int got;

				do {
					for (int k = 0; k < BATCH; k++) {
						iov[k] = (struct iovec){ bufs[k], FRAME };
						msgs[k] = (struct mmsghdr){ .msg_hdr = {
							.msg_name = &from[k], .msg_namelen = sizeof from[k], .msg_iov = &iov[k],
							.msg_iovlen = 1, .msg_control = cmsg[k], .msg_controllen = sizeof cmsg[k] } };
					}
					got = recvmmsg(sock, msgs, BATCH, MSG_DONTWAIT, NULL);
					for (int k = 0; k < got; k++) {
						struct iovec w[2] = { { (void *)zero, VNET }, { bufs[k], msgs[k].msg_len } };

						if (writev(tap, w, 2) < 0 && errno != EAGAIN)
							die("writev");
					}
				} while (got == BATCH);
			}
		}
	}
}

/* vde_plug udp://'s calls. */
static void run_vde(int tap, int port, struct in_addr remote)
{
	struct sockaddr_in me = { .sin_family = AF_INET, .sin_port = htons(port) };
	struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons(port), .sin_addr = remote };
	struct pollfd fds[2];
	int sock = socket(AF_INET, SOCK_DGRAM, IPPROTO_UDP);

	if (sock < 0 || bind(sock, (struct sockaddr *)&me, sizeof me) < 0)
		die("socket");
	fds[0] = (struct pollfd){ .fd = tap, .events = POLLIN };
	fds[1] = (struct pollfd){ .fd = sock, .events = POLLIN };
	for (;;) {
		ssize_t len;

		if (poll(fds, 2, -1) < 0)
			die("poll");
		if ((fds[0].revents & POLLIN) && (len = read(tap, bufs[0], FRAME)) > 0)
			sendto(sock, bufs[0], len, 0, (struct sockaddr *)&to, sizeof to);
		if ((fds[1].revents & POLLIN) && (len = recvfrom(sock, bufs[1], FRAME, 0, NULL, NULL)) > 0)
			if (write(tap, bufs[1], len) < 0 && errno != EAGAIN)
				die("write");
	}
}

int main(int argc, char **argv)
{
	struct in_addr remote;
	int rrqnet;

	if (argc != 5 || (strcmp(argv[1], "rrqnet") && strcmp(argv[1], "vde")) ||
	    inet_pton(AF_INET, argv[4], &remote) != 1) {
		fprintf(stderr, "usage: plug rrqnet|vde TAP PORT REMOTE-IPV4\n");
		return 2;
	}
	rrqnet = !strcmp(argv[1], "rrqnet");
	if (rrqnet)
		run_rrqnet(open_tap(argv[2], 1), atoi(argv[3]), remote);
	else
		run_vde(open_tap(argv[2], 0), atoi(argv[3]), remote);
	return 0;
}
