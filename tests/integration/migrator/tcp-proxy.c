// SPDX-License-Identifier: GPL-2.0-only
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "tcp-proxy.h"

#define TP_MAX_CONNS 32
#define TP_BUF	     (256u << 10)

/* One direction of a relayed connection. */
struct tp_dir {
	int from, to;	 /* fds of the owning connection */
	char *buf;	 /* TP_BUF bytes */
	size_t off, len; /* bytes [off, len) read, not yet written */
	bool eof;	 /* @from said EOF */
	bool shut;	 /* EOF passed on: shutdown(@to, SHUT_WR) */
};

struct tp_conn {
	bool used;
	int fd[2];	    /* 0: accepted from the client, 1: to the target */
	struct tp_dir d[2]; /* 0: client -> target, 1: target -> client */
	uint64_t accept_ms; /* client data waits until accept_ms + delay_ms */
};

struct tcp_proxy {
	pthread_t thread;
	int lfd;			    /* listening socket */
	int wake[2];			    /* pipe: a byte wakes the thread for a command */
	unsigned int target;		    /* port on 127.0.0.1 */
	struct tp_conn conns[TP_MAX_CONNS]; /* owned by the thread */
	pthread_mutex_t lock;		    /* protects the fields below */
	pthread_cond_t cond;
	bool stop;			/* protected by lock */
	unsigned int cut_req, cut_done; /* protected by lock: generations */
	unsigned int cut_count;		/* protected by lock: connections of the last cut */
	unsigned int delay_ms;		/* protected by lock */
	unsigned int accepted;		/* protected by lock */
};

static uint64_t tp_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void tp_reset_fd(int fd)
{
	struct linger l = {.l_onoff = 1, .l_linger = 0};

	setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
	close(fd);
}

static void tp_conn_close(struct tp_conn *c, bool reset)
{
	for (int i = 0; i < 2; i++) {
		if (reset)
			tp_reset_fd(c->fd[i]);
		else
			close(c->fd[i]);
		free(c->d[i].buf);
	}
	memset(c, 0, sizeof(*c));
}

static void tp_accept(struct tcp_proxy *p)
{
	struct sockaddr_in a = {.sin_family = AF_INET};
	struct tp_conn *c = NULL;
	int one = 1, cfd, tfd;

	cfd = accept4(p->lfd, NULL, NULL, SOCK_CLOEXEC);
	if (cfd < 0)
		return;
	for (int i = 0; i < TP_MAX_CONNS && !c; i++)
		if (!p->conns[i].used)
			c = &p->conns[i];
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	a.sin_port = htons((uint16_t)p->target);
	tfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (!c || tfd < 0 || connect(tfd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		/* No room or the target is down (a migrator restarting): refuse. */
		if (tfd >= 0)
			close(tfd);
		tp_reset_fd(cfd);
		return;
	}
	memset(c, 0, sizeof(*c));
	c->used = true;
	c->fd[0] = cfd;
	c->fd[1] = tfd;
	for (int i = 0; i < 2; i++) {
		setsockopt(c->fd[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		fcntl(c->fd[i], F_SETFL, O_NONBLOCK);
		c->d[i].from = c->fd[i];
		c->d[i].to = c->fd[1 - i];
		c->d[i].buf = malloc(TP_BUF);
	}
	pthread_mutex_lock(&p->lock);
	c->accept_ms = tp_now_ms();
	p->accepted++;
	pthread_mutex_unlock(&p->lock);
}

/* Moves what it can in @d; false if the connection must be reset. */
static bool tp_dir_pump(struct tp_dir *d, bool readable, bool writable)
{
	ssize_t n;

	if (readable && !d->len && !d->eof) {
		n = read(d->from, d->buf, TP_BUF);
		if (n > 0) {
			d->off = 0;
			d->len = (size_t)n;
			writable = true;
		} else if (n == 0) {
			d->eof = true;
		} else if (errno != EAGAIN && errno != EINTR) {
			return false; /* ECONNRESET: pass the reset on */
		}
	}
	if (writable && d->off < d->len) {
		n = write(d->to, d->buf + d->off, d->len - d->off);
		if (n > 0) {
			d->off += (size_t)n;
			if (d->off == d->len)
				d->off = d->len = 0;
		} else if (n < 0 && errno != EAGAIN && errno != EINTR) {
			return false;
		}
	}
	if (d->eof && !d->len && !d->shut) {
		shutdown(d->to, SHUT_WR);
		d->shut = true;
	}
	return true;
}

static void *tp_thread(void *arg)
{
	struct tcp_proxy *p = arg;
	struct pollfd pfd[2 + 2 * TP_MAX_CONNS];

	for (;;) {
		unsigned int n = 2, cuts = 0, delay_ms;
		bool delayed = false;
		uint64_t now = tp_now_ms();
		char b[16];

		pthread_mutex_lock(&p->lock);
		if (p->stop) {
			pthread_mutex_unlock(&p->lock);
			break;
		}
		if (p->cut_req != p->cut_done) {
			for (int i = 0; i < TP_MAX_CONNS; i++) {
				if (p->conns[i].used) {
					tp_conn_close(&p->conns[i], true);
					cuts++;
				}
			}
			p->cut_count = cuts;
			p->cut_done = p->cut_req;
			pthread_cond_broadcast(&p->cond);
		}
		delay_ms = p->delay_ms;
		pthread_mutex_unlock(&p->lock);

		pfd[0] = (struct pollfd){.fd = p->wake[0], .events = POLLIN};
		pfd[1] = (struct pollfd){.fd = p->lfd, .events = POLLIN};
		for (int i = 0; i < TP_MAX_CONNS; i++) {
			struct tp_conn *c = &p->conns[i];

			if (!c->used)
				continue;
			for (int s = 0; s < 2; s++) {
				/* fd[s] is d[s].from and d[1-s].to */
				short ev = 0;

				if (!c->d[s].len && !c->d[s].eof &&
				    (s == 1 || now >= c->accept_ms + delay_ms))
					ev |= POLLIN;
				if (c->d[1 - s].len)
					ev |= POLLOUT;
				pfd[n++] = (struct pollfd){.fd = c->fd[s], .events = ev};
			}
			if (now < c->accept_ms + delay_ms)
				delayed = true;
		}
		if (poll(pfd, n, delayed ? 5 : -1) < 0 && errno != EINTR)
			break;
		if (pfd[0].revents) {
			ssize_t r = read(p->wake[0], b, sizeof(b));

			(void)r; /* a byte or EAGAIN: either way awake */
		}
		n = 2;
		for (int i = 0; i < TP_MAX_CONNS; i++) {
			struct tp_conn *c = &p->conns[i];
			short rev[2];
			bool ok = true;

			if (!c->used)
				continue;
			rev[0] = pfd[n++].revents;
			rev[1] = pfd[n++].revents;
			if ((rev[0] | rev[1]) & POLLERR)
				ok = false; /* a reset on one side: pass it on at once */
			for (int s = 0; s < 2 && ok; s++) {
				bool readable = rev[s] & (POLLIN | POLLHUP | POLLERR);
				bool writable = rev[1 - s] & (POLLOUT | POLLERR);

				if (s == 0 && tp_now_ms() < c->accept_ms + delay_ms)
					readable = false;
				ok = tp_dir_pump(&c->d[s], readable, writable);
			}
			if (!ok)
				tp_conn_close(c, true);
			else if (c->d[0].shut && c->d[1].shut)
				tp_conn_close(c, false);
		}
		if (pfd[1].revents & POLLIN)
			tp_accept(p);
	}
	for (int i = 0; i < TP_MAX_CONNS; i++)
		if (p->conns[i].used)
			tp_conn_close(&p->conns[i], true);
	return NULL;
}

static void tp_wake(struct tcp_proxy *p)
{
	ssize_t r = write(p->wake[1], "x", 1);

	(void)r; /* a full pipe: the thread is awake anyway */
}

int tcp_proxy_start(struct tcp_proxy **out, unsigned int target_port, unsigned int *listen_port)
{
	struct sockaddr_in a = {.sin_family = AF_INET};
	socklen_t sl = sizeof(a);
	struct tcp_proxy *p = calloc(1, sizeof(*p));
	int ret;

	if (!p)
		return -ENOMEM;
	p->target = target_port;
	p->wake[0] = p->wake[1] = -1;
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->cond, NULL);
	p->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (p->lfd < 0 || bind(p->lfd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
	    listen(p->lfd, 64) < 0 || getsockname(p->lfd, (struct sockaddr *)&a, &sl) < 0 ||
	    pipe2(p->wake, O_CLOEXEC | O_NONBLOCK) < 0) {
		ret = -errno;
		goto err;
	}
	*listen_port = ntohs(a.sin_port);
	ret = -pthread_create(&p->thread, NULL, tp_thread, p);
	if (ret)
		goto err;
	*out = p;
	return 0;
err:
	if (p->lfd >= 0)
		close(p->lfd);
	if (p->wake[0] >= 0) {
		close(p->wake[0]);
		close(p->wake[1]);
	}
	free(p);
	return ret;
}

void tcp_proxy_stop(struct tcp_proxy *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->lock);
	p->stop = true;
	pthread_mutex_unlock(&p->lock);
	tp_wake(p);
	pthread_join(p->thread, NULL);
	close(p->lfd);
	close(p->wake[0]);
	close(p->wake[1]);
	pthread_mutex_destroy(&p->lock);
	pthread_cond_destroy(&p->cond);
	free(p);
}

unsigned int tcp_proxy_cut(struct tcp_proxy *p)
{
	unsigned int gen, n;

	pthread_mutex_lock(&p->lock);
	gen = ++p->cut_req;
	tp_wake(p);
	while (p->cut_done != gen)
		pthread_cond_wait(&p->cond, &p->lock);
	n = p->cut_count;
	pthread_mutex_unlock(&p->lock);
	return n;
}

void tcp_proxy_set_delay(struct tcp_proxy *p, unsigned int ms)
{
	pthread_mutex_lock(&p->lock);
	p->delay_ms = ms;
	pthread_mutex_unlock(&p->lock);
}

unsigned int tcp_proxy_accepted(struct tcp_proxy *p)
{
	unsigned int n;

	pthread_mutex_lock(&p->lock);
	n = p->accepted;
	pthread_mutex_unlock(&p->lock);
	return n;
}
