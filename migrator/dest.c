/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The incoming job's worker thread: accept the main connection, check the
 * Hello, set up the receivedmap, accept the channels, start the receive
 * threads, and once the device state arrived and every channel passed its
 * FINAL sync: join, invalidate the receivedmap, load the state, and resume
 * the guest only after the source committed (docs/MIGRATION.md).
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log/log.h"
#include "migrator/dest-internal.h"

int mig_dst_alloc(struct mig_dst **out, struct mig_session *s, const char *uri)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	struct mig_dst *dst;
	char err[256];
	int ret;

	dst = calloc(1, sizeof(*dst));
	if (!dst)
		return -ENOMEM;
	dst->s = s;
	dst->main_fd = -1;
	ret = mig_uri_listen(uri, &dst->listen_fd, err, sizeof(err));
	if (ret) {
		log_err("incoming: %s", err);
		free(dst);
		return ret;
	}
	if (getsockname(dst->listen_fd, (struct sockaddr *)&ss, &sl) == 0)
		dst->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
							   : ((struct sockaddr_in *)&ss)->sin_port);
	pthread_mutex_init(&dst->lock, NULL);
	pthread_mutex_init(&dst->tx_lock, NULL);
	pthread_mutex_init(&dst->bar_lock, NULL);
	pthread_cond_init(&dst->bar_cond, NULL);
	*out = dst;
	return 0;
}

unsigned int mig_dst_port(struct mig_dst *dst)
{
	return dst->port;
}

void mig_dst_abort(struct mig_dst *dst, int err, const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&dst->lock);
	if (!dst->aborted) {
		dst->aborted = true;
		dst->err = err;
		va_start(ap, fmt);
		vsnprintf(dst->reason, sizeof(dst->reason), fmt, ap);
		va_end(ap);
		/*
		 * Best effort: tell the source why (a short message into an idle
		 * socket; the worker never writes while receive threads run).
		 * Then wake accept() and every blocked read; fds stay open until free.
		 */
		if (dst->main_fd >= 0 && err != -ECANCELED && err != -ECONNRESET) {
			pthread_mutex_lock(&dst->tx_lock);
			mig_msg_send_error(dst->main_fd, dst->reason);
			pthread_mutex_unlock(&dst->tx_lock);
		}
		shutdown(dst->listen_fd, SHUT_RDWR);
		if (dst->main_fd >= 0)
			shutdown(dst->main_fd, SHUT_RDWR);
		for (unsigned int i = 0; dst->chans && i < dst->nr_chans; i++)
			if (dst->chans[i].fd >= 0)
				shutdown(dst->chans[i].fd, SHUT_RDWR);
	}
	pthread_mutex_unlock(&dst->lock);

	pthread_mutex_lock(&dst->bar_lock);
	dst->bar_broken = true;
	pthread_cond_broadcast(&dst->bar_cond);
	pthread_mutex_unlock(&dst->bar_lock);
}

static void dst_publish_fd(struct mig_dst *dst, int *slot, int fd)
{
	pthread_mutex_lock(&dst->lock);
	*slot = fd;
	if (dst->aborted)
		shutdown(fd, SHUT_RDWR);
	pthread_mutex_unlock(&dst->lock);
}

/* Accepts one connection within @timeout_ms (-1: no limit; abort wakes it). */
static int dst_accept(struct mig_dst *dst, int timeout_ms, int *fdp)
{
	struct pollfd pfd = {.fd = dst->listen_fd, .events = POLLIN};
	int ret, fd;

	ret = poll(&pfd, 1, timeout_ms);
	if (ret == 0)
		return -ETIMEDOUT;
	if (ret < 0)
		return -errno;
	if (mig_dst_aborted(dst))
		return -ECANCELED;
	fd = accept4(dst->listen_fd, NULL, NULL, SOCK_CLOEXEC);
	if (fd < 0)
		return mig_dst_aborted(dst) ? -ECANCELED : -errno;
	ret = mig_sock_setup(fd, dst->s->io_timeout_ms);
	if (ret) {
		close(fd);
		return ret;
	}
	*fdp = fd;
	return 0;
}

/* Fails the job; abort tells the source why. */
static int dst_fail(struct mig_dst *dst, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int dst_fail(struct mig_dst *dst, int err, const char *fmt, ...)
{
	char reason[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(reason, sizeof(reason), fmt, ap);
	va_end(ap);
	mig_dst_abort(dst, err, "%s", reason);
	return err;
}

static int dst_check_hello(struct mig_dst *dst, const Cleave__Wire__Hello *h)
{
	const struct shm_ctl_header *ch = dst->s->env.ctl->hdr;

	if (h->magic != WIRE_MAGIC)
		return dst_fail(dst, -EPROTO, "bad stream magic 0x%" PRIx64, h->magic);
	if (h->version != WIRE_VERSION)
		return dst_fail(dst, -EPROTO, "unsupported stream version %u (this side speaks %u)",
				h->version, WIRE_VERSION);
	if (h->session_id.len != 16 || h->page_size != SHM_PAGE_SIZE || !h->channels ||
	    h->channels > MIG_MAX_CHANNELS)
		return dst_fail(dst, -EPROTO, "bad Hello: page size %u, %u channels", h->page_size,
				h->channels);
	if (h->n_regions != ch->nr_regions)
		return dst_fail(dst, -EPROTO,
				"RAM layout mismatch: source has %zu regions, destination %u",
				h->n_regions, ch->nr_regions);
	for (uint32_t r = 0; r < ch->nr_regions; r++)
		if (h->regions[r]->gpa != ch->regions[r].gpa ||
		    h->regions[r]->size != ch->regions[r].size)
			return dst_fail(dst, -EPROTO,
					"RAM layout mismatch: region %u: source gpa 0x%" PRIx64
					" size 0x%" PRIx64 ", destination gpa 0x%" PRIx64
					" size 0x%" PRIx64,
					r, h->regions[r]->gpa, h->regions[r]->size,
					ch->regions[r].gpa, ch->regions[r].size);
	return 0;
}

/*
 * The destination RAM must read as zero wherever no page lands (ZERO pages
 * and holes are not written): punch out whatever an earlier, failed
 * attempt left.  Only for a VM that never ran (inmigrate).
 */
static int dst_ram_clear(struct mig_dst *dst)
{
	struct mig_session *s = dst->s;
	int state = 0, ret;

	ret = s->env.ops->run_state(s->env.ops_arg, &state);
	if (ret)
		return dst_fail(dst, ret, "vcpu-proc STATUS: %s", strerror(-ret));
	if (state != MIG_RUN_STATE_INMIGRATE)
		return dst_fail(dst, -EBUSY,
				"destination VM is not waiting for an incoming migration "
				"(run state %d)",
				state);
	for (uint32_t r = 0; r < s->env.ctl->hdr->nr_regions; r++)
		if (fallocate(s->env.ram[r].fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0,
			      (off_t)s->env.ram[r].size))
			return dst_fail(dst, -errno, "region %u: punch hole: %s", r,
					strerror(errno));
	return 0;
}

/* Zeroes the received bitmaps and marks them live: before any receive thread. */
static void dst_receivedmap_init(struct mig_dst *dst)
{
	const struct shm_ctl_header *h = dst->s->env.ctl->hdr;

	assert(dst->state == MIG_DST_IDLE);
	for (uint32_t r = 0; r < h->nr_regions; r++) {
		dst->received[r] = shm_ctl_received_bitmap(dst->s->env.ctl, r);
		shm_bitmap_zero(dst->received[r], h->regions[r].nr_pages);
	}
	mig_record_set_receivedmap_live(dst->s->rec, true);
	dst->state = MIG_DST_RECEIVING;
}

/*
 * The one teardown of the receive side: stop -> join -> invalidate.  Safe
 * to call in any state and twice; the receivedmap is invalidated only once
 * every receive thread has been joined (invariant 1).
 */
static void dst_teardown(struct mig_dst *dst)
{
	switch (dst->state) {
	case MIG_DST_RECEIVING:
		mig_recv_join(dst); /* the caller aborted, or every thread saw FINAL */
				    /* fallthrough */
	case MIG_DST_JOINED:
		assert(dst->state == MIG_DST_JOINED);
		mig_record_set_receivedmap_live(dst->s->rec, false);
		memset(dst->received, 0, sizeof(dst->received));
		dst->state = MIG_DST_CLOSED;
		break;
	case MIG_DST_IDLE:
	case MIG_DST_CLOSED:
		break;
	}
}

static int dst_accept_channels(struct mig_dst *dst, const uint8_t *sid)
{
	for (unsigned int n = 0; n < dst->nr_chans; n++) {
		struct mig_chan_hello ch;
		int fd = -1, ret;

		ret = dst_accept(dst, (int)dst->s->io_timeout_ms, &fd);
		if (ret)
			return dst_fail(dst, ret, "accepting channel %u of %u: %s", n,
					dst->nr_chans, strerror(-ret));
		ret = mig_io_read(fd, &ch, sizeof(ch));
		if (!ret && (ch.magic != MIG_CHAN_MAGIC || ch.version != WIRE_VERSION ||
			     memcmp(ch.session_id, sid, 16) || ch.index >= dst->nr_chans ||
			     dst->chans[ch.index].fd >= 0))
			ret = -EPROTO;
		if (ret) {
			close(fd);
			return dst_fail(dst, ret, "channel handshake: %s",
					ret == -EPROTO ? "bad magic, session or index"
						       : strerror(-ret));
		}
		dst_publish_fd(dst, &dst->chans[ch.index].fd, fd);
	}
	return 0;
}

/* Waits until every channel passed SYNC <round>, then tells the source. */
static int dst_round_ack(struct mig_dst *dst, uint64_t round)
{
	Cleave__Wire__WireMsg m = CLEAVE__WIRE__WIRE_MSG__INIT;
	Cleave__Wire__RoundAck ack = CLEAVE__WIRE__ROUND_ACK__INIT;
	bool broken;
	int ret;

	pthread_mutex_lock(&dst->bar_lock);
	/* Generation g means rounds 0..g-1 are complete on every channel. */
	while (dst->bar_generation <= round && !dst->bar_broken)
		pthread_cond_wait(&dst->bar_cond, &dst->bar_lock);
	broken = dst->bar_broken;
	pthread_mutex_unlock(&dst->bar_lock);
	if (broken)
		return -ECANCELED;
	ack.round = round;
	m.body_case = CLEAVE__WIRE__WIRE_MSG__BODY_ROUND_ACK;
	m.round_ack = &ack;
	pthread_mutex_lock(&dst->tx_lock);
	ret = mig_msg_send(dst->main_fd, &m);
	pthread_mutex_unlock(&dst->tx_lock);
	if (ret)
		mig_dst_abort(dst, ret, "main channel: send: %s", strerror(-ret));
	return ret;
}

/* Until all RAM landed; returns the device state message in *dsm. */
static int dst_receive(struct mig_dst *dst, Cleave__Wire__WireMsg **dsm)
{
	struct mig_session *s = dst->s;
	Cleave__Wire__WireMsg *m = NULL;
	int ret;

	for (;;) {
		ret = mig_msg_recv(dst->main_fd, &m);
		if (ret)
			return dst_fail(dst, ret, "main channel: %s",
					ret == -ECONNRESET ? "source closed the connection"
							   : strerror(-ret));
		switch (m->body_case) {
		case CLEAVE__WIRE__WIRE_MSG__BODY_ROUND:
			atomic_store(&s->ctr.rounds, m->round->round + 1);
			ret = dst_round_ack(dst, m->round->round);
			if (ret) {
				cleave__wire__wire_msg__free_unpacked(m, NULL);
				return ret;
			}
			break;
		case CLEAVE__WIRE__WIRE_MSG__BODY_PROGRESS:
			break;
		case CLEAVE__WIRE__WIRE_MSG__BODY_DEVICE_STATE:
			*dsm = m;
			return 0;
		case CLEAVE__WIRE__WIRE_MSG__BODY_ERROR:
			ret = dst_fail(dst, -EPROTO, "source: %s", m->error->reason);
			cleave__wire__wire_msg__free_unpacked(m, NULL);
			return ret;
		default:
			ret = dst_fail(dst, -EPROTO, "protocol error: unexpected message %d",
				       (int)m->body_case);
			cleave__wire__wire_msg__free_unpacked(m, NULL);
			return ret;
		}
		cleave__wire__wire_msg__free_unpacked(m, NULL);
	}
}

static int dst_send(struct mig_dst *dst, Cleave__Wire__WireMsg *m, int body, void *msg)
{
	int ret;

	m->body_case = body;
	m->hello_ack = msg; /* any member of the oneof: they share storage */
	pthread_mutex_lock(&dst->tx_lock);
	ret = mig_msg_send(dst->main_fd, m);
	pthread_mutex_unlock(&dst->tx_lock);
	if (ret)
		mig_dst_abort(dst, ret, "main channel: send: %s", strerror(-ret));
	return ret;
}

static int dst_finish(struct mig_dst *dst, const Cleave__Wire__DeviceState *ds)
{
	struct mig_session *s = dst->s;
	const struct mig_vm_ops *ops = s->env.ops;
	Cleave__Wire__WireMsg m = CLEAVE__WIRE__WIRE_MSG__INIT;
	Cleave__Wire__Loaded loaded = CLEAVE__WIRE__LOADED__INIT;
	Cleave__Wire__Complete complete = CLEAVE__WIRE__COMPLETE__INIT;
	Cleave__Wire__WireMsg *in;
	int ret;

	uint64_t t0 = mig_now_ns(), t1, t2;

	/* All RAM is final only once every channel passed FINAL and was joined. */
	mig_recv_join(dst);
	t1 = mig_now_ns();
	if (mig_dst_aborted(dst))
		return -ECANCELED;
	for (unsigned int i = 0; i < dst->nr_chans; i++)
		if (!dst->chans[i].done || dst->chans[i].final_round != ds->final_round)
			return dst_fail(dst, -EPROTO,
					"channel %u ended in round %" PRIu64
					", device state says %" PRIu64,
					i, dst->chans[i].final_round, ds->final_round);
	dst_teardown(dst);
	/* Invariant 3: the state (and its clock) is loaded only after RAM is final. */
	ret = ops->load_state(s->env.ops_arg, ds->state.data, ds->state.len);
	if (ret)
		return dst_fail(dst, ret, "vcpu-proc LOAD_STATE: %s", strerror(-ret));
	t2 = mig_now_ns();
	log_debug("device state: channels done after %lu us, LOAD_STATE %lu us",
		  (unsigned long)(t1 - t0) / 1000, (unsigned long)(t2 - t1) / 1000);
	ret = dst_send(dst, &m, CLEAVE__WIRE__WIRE_MSG__BODY_LOADED, &loaded);
	if (ret)
		return ret;
	ret = mig_msg_recv(dst->main_fd, &in);
	if (ret)
		return dst_fail(dst, ret, "main channel: waiting for Commit: %s", strerror(-ret));
	if (in->body_case != CLEAVE__WIRE__WIRE_MSG__BODY_COMMIT) {
		ret = in->body_case == CLEAVE__WIRE__WIRE_MSG__BODY_ERROR
			      ? dst_fail(dst, -EPROTO, "source: %s", in->error->reason)
			      : dst_fail(dst, -EPROTO, "protocol error: expected Commit");
		cleave__wire__wire_msg__free_unpacked(in, NULL);
		return ret;
	}
	cleave__wire__wire_msg__free_unpacked(in, NULL);
	/* The source will never run the guest again: it is ours now. */
	ret = ops->resume(s->env.ops_arg);
	if (ret)
		return dst_fail(dst, ret, "vcpu-proc RESUME: %s (guest runs nowhere)",
				strerror(-ret));
	if (dst_send(dst, &m, CLEAVE__WIRE__WIRE_MSG__BODY_COMPLETE, &complete))
		log_warn("source did not get Complete; the guest runs here");
	return 0;
}

static int dst_run(struct mig_dst *dst)
{
	struct mig_session *s = dst->s;
	Cleave__Wire__WireMsg m = CLEAVE__WIRE__WIRE_MSG__INIT;
	Cleave__Wire__HelloAck ack = CLEAVE__WIRE__HELLO_ACK__INIT;
	Cleave__Wire__WireMsg *in = NULL;
	struct mig_recv_chan *chans;
	uint8_t sid[16];
	int fd = -1, ret;

	ret = dst_accept(dst, -1, &fd);
	if (ret)
		return dst_fail(dst, ret, "accept: %s", strerror(-ret));
	dst_publish_fd(dst, &dst->main_fd, fd);
	mig_session_set_status(s, MIG_STATUS_SETUP);
	ret = mig_msg_recv(dst->main_fd, &in);
	if (ret)
		return dst_fail(dst, ret, "main channel: waiting for Hello: %s",
				ret == -EBADMSG ? "not a cleave migration stream" : strerror(-ret));
	if (in->body_case != CLEAVE__WIRE__WIRE_MSG__BODY_HELLO) {
		cleave__wire__wire_msg__free_unpacked(in, NULL);
		return dst_fail(dst, -EPROTO, "protocol error: expected Hello");
	}
	ret = dst_check_hello(dst, in->hello);
	if (!ret)
		ret = dst_ram_clear(dst);
	if (ret) {
		cleave__wire__wire_msg__free_unpacked(in, NULL);
		return ret;
	}
	memcpy(sid, in->hello->session_id.data, 16);
	pthread_mutex_lock(&s->lock);
	memcpy(s->session_id, sid, 16);
	s->epoch = in->hello->epoch;
	pthread_mutex_unlock(&s->lock);

	chans = calloc(in->hello->channels, sizeof(*chans));
	if (!chans) {
		cleave__wire__wire_msg__free_unpacked(in, NULL);
		return dst_fail(dst, -ENOMEM, "out of memory");
	}
	for (unsigned int i = 0; i < in->hello->channels; i++) {
		chans[i].dst = dst;
		chans[i].index = i;
		chans[i].fd = -1;
	}
	pthread_mutex_lock(&dst->lock); /* abort walks the channels */
	dst->chans = chans;
	dst->nr_chans = in->hello->channels;
	pthread_mutex_unlock(&dst->lock);
	cleave__wire__wire_msg__free_unpacked(in, NULL);
	ret = dst_send(dst, &m, CLEAVE__WIRE__WIRE_MSG__BODY_HELLO_ACK, &ack);
	if (ret)
		return ret;
	ret = dst_accept_channels(dst, sid);
	if (ret)
		return ret;
	dst_receivedmap_init(dst);
	ret = mig_recv_start(dst);
	if (ret)
		return dst_fail(dst, ret, "receive threads: %s", strerror(-ret));
	mig_session_set_status(s, MIG_STATUS_ACTIVE);
	ret = dst_receive(dst, &in);
	if (ret)
		return ret;
	ret = dst_finish(dst, in->device_state);
	cleave__wire__wire_msg__free_unpacked(in, NULL);
	return ret;
}

void *mig_dst_run(void *arg)
{
	struct mig_dst *dst = arg;
	char reason[256];
	int ret;

	log_set_thread("mig/dst");
	ret = dst_run(dst);
	if (ret)
		mig_dst_abort(dst, ret, "%s", strerror(-ret)); /* first reason wins */
	dst_teardown(dst);
	pthread_mutex_lock(&dst->lock);
	snprintf(reason, sizeof(reason), "%s", dst->reason);
	if (ret)
		ret = dst->err ? dst->err : ret;
	pthread_mutex_unlock(&dst->lock);
	mig_session_finish(dst->s, ret, reason);
	return NULL;
}

void mig_dst_free(struct mig_dst *dst)
{
	if (!dst)
		return;
	/* The worker was joined: its teardown left the receive side CLOSED. */
	assert(dst->state == MIG_DST_IDLE || dst->state == MIG_DST_CLOSED);
	for (unsigned int i = 0; dst->chans && i < dst->nr_chans; i++)
		if (dst->chans[i].fd >= 0)
			close(dst->chans[i].fd);
	if (dst->main_fd >= 0)
		close(dst->main_fd);
	close(dst->listen_fd);
	pthread_cond_destroy(&dst->bar_cond);
	pthread_mutex_destroy(&dst->bar_lock);
	pthread_mutex_destroy(&dst->tx_lock);
	pthread_mutex_destroy(&dst->lock);
	free(dst->chans);
	free(dst);
}
