/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The incoming job's worker thread: accept the main connection, check the
 * Hello, set up the receivedmap, accept the channels, start the receive
 * threads, and once the device state arrived and every channel passed its
 * FINAL sync: join, invalidate the receivedmap, load the state, and resume
 * the guest only after the source committed (docs/MIGRATION.md).
 *
 * A lost source (dropped connection, restarted migrator) is waited for
 * until reconnect-timeout: the receive threads are joined, the receivedmap
 * stays live, and a Hello of the same session gets the report of what
 * landed (dst_report).  A restarted destination migrator does the same
 * from the session record.
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "log/log.h"
#include "migrator/dest-job.h"
#include "migrator/mux.h"
#include "migrator/tls.h"

/* While waiting at the round barrier, the main connection is checked this often. */
#define DST_HANGUP_POLL_MS 50

static struct mig_dst *dst_of(struct mig_job *job)
{
	return (struct mig_dst *)((char *)job - offsetof(struct mig_dst, job));
}

static void *dst_worker(void *arg);
static void dst_shut_down(struct mig_job *job, bool job_ends);
static void dst_wake(struct mig_job *job);
static void dst_free(struct mig_job *job);

static const struct mig_job_ops dst_job_ops = {
	.thread_name = "mig/dst",
	.run = dst_worker,
	.shut_down = dst_shut_down,
	.wake = dst_wake,
	.free = dst_free,
};

/* The fd of an fd: URI failed: the job learns why. */
static void dst_mux_dead(void *arg, int err, const char *reason)
{
	mig_job_abort(arg, err, "%s", reason);
}

/*
 * An fd: URI: the streams the source opens over the fd are accepted from
 * the mux's queue, which polls like a listener; nothing else can connect.
 */
static int dst_alloc_fd(struct mig_dst *dst, const char *uri)
{
	char err[256];
	int fd, ret;

	if (strlen(uri) >= sizeof(dst->uri))
		return -EINVAL;
	fd = mig_session_fd_take(dst->s, uri + 3);
	if (fd < 0)
		return fd;
	mig_job_init(&dst->job, dst->s, &dst_job_ops);
	ret = mig_mux_start(&dst->mux, fd, true, uri, dst_mux_dead, &dst->job, err, sizeof(err));
	if (!ret) {
		dst->listen_fd = fcntl(mig_mux_queue_fd(dst->mux), F_DUPFD_CLOEXEC, 0);
		if (dst->listen_fd < 0) {
			ret = -errno;
			snprintf(err, sizeof(err), "%s: %s", uri, strerror(errno));
			mig_mux_free(dst->mux);
		}
	}
	if (ret) {
		log_err("incoming: %s", err);
		mig_job_fini(&dst->job);
		return ret;
	}
	snprintf(dst->uri, sizeof(dst->uri), "%s", uri);
	return 0;
}

int mig_dst_accept4(struct mig_dst *dst, int flags)
{
	if (dst->mux)
		return mig_mux_accept(dst->mux, flags);
	return accept4(dst->listen_fd, NULL, NULL, flags);
}

/*
 * Listens at a tcp: or unix: @uri; @bound (256 bytes) gets the URI with the
 * bound port, not 0: a restarted migrator must listen where the source calls.
 */
static int dst_listen(const char *uri, int *fdp, char bound[256], unsigned int *port, char *err,
		      size_t errlen)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	int ret = mig_uri_listen(uri, fdp, err, errlen);

	if (ret)
		return ret;
	*port = 0;
	if (mig_uri_is_unix(uri)) {
		snprintf(bound, 256, "%s", uri);
		return 0;
	}
	if (getsockname(*fdp, (struct sockaddr *)&ss, &sl) == 0)
		*port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
						       : ((struct sockaddr_in *)&ss)->sin_port);
	snprintf(bound, 256, "%.*s:%u", (int)(strrchr(uri, ':') ? strrchr(uri, ':') - uri : 0), uri,
		 *port);
	return 0;
}

int mig_dst_relisten(struct mig_job *job, const char *uri, char bound[256], unsigned int *port,
		     char *err, size_t errlen)
{
	struct mig_dst *dst = dst_of(job);
	char old_uri[sizeof(dst->relisten_uri)];
	int fd, old, ret;

	pthread_mutex_lock(&job->lock);
	/* The same URI keeps its listener (binding it again would find it in use). */
	if (!strcmp(uri, dst->relisten_fd >= 0 ? dst->relisten_uri : dst->uri)) {
		snprintf(bound, 256, "%s", uri);
		*port = dst->relisten_fd >= 0 ? dst->relisten_port : dst->port;
		pthread_mutex_unlock(&job->lock);
		return 0;
	}
	pthread_mutex_unlock(&job->lock);
	/* An fd: destination accepts only the streams of its one fd. */
	if (dst->mux || (strncmp(uri, "tcp:", 4) && !mig_uri_is_unix(uri))) {
		snprintf(err, errlen, "%s: migrate-recover takes a tcp: or unix: URI%s", uri,
			 dst->mux ? " (or, on an fd: migration, its own)" : "");
		return -EINVAL;
	}
	if (strlen(uri) >= sizeof(dst->uri)) {
		snprintf(err, errlen, "URI too long");
		return -EINVAL;
	}
	ret = dst_listen(uri, &fd, bound, port, err, errlen);
	if (ret)
		return ret;
	pthread_mutex_lock(&job->lock);
	old = dst->relisten_fd;
	memcpy(old_uri, dst->relisten_uri, sizeof(old_uri));
	dst->relisten_fd = fd;
	snprintf(dst->relisten_uri, sizeof(dst->relisten_uri), "%s", bound);
	dst->relisten_port = *port;
	/* Wakes a worker polling the old one: it takes the new one (mig_dst_take_listener). */
	shutdown(dst->listen_fd, SHUT_RDWR);
	pthread_mutex_unlock(&job->lock);
	if (old >= 0) { /* a recover the worker had not taken yet */
		close(old);
		if (mig_uri_is_unix(old_uri))
			unlink(old_uri + 5);
	}
	return 0;
}

bool mig_dst_take_listener(struct mig_dst *dst)
{
	int old = -1;
	char old_uri[256];

	pthread_mutex_lock(&dst->job.lock);
	if (dst->relisten_fd >= 0) {
		old = dst->listen_fd;
		memcpy(old_uri, dst->uri, sizeof(old_uri));
		dst->listen_fd = dst->relisten_fd;
		dst->relisten_fd = -1;
		memcpy(dst->uri, dst->relisten_uri, sizeof(dst->uri));
		dst->port = dst->relisten_port;
	}
	pthread_mutex_unlock(&dst->job.lock);
	if (old < 0)
		return false;
	close(old);
	if (mig_uri_is_unix(old_uri))
		unlink(old_uri + 5);
	log_info("listening at %s (was %s)", dst->uri, old_uri);
	return true;
}

int mig_dst_alloc(struct mig_job **out, struct mig_session *s, const char *uri, unsigned int *port)
{
	struct mig_dst *dst;
	char err[256];
	int ret;

	dst = calloc(1, sizeof(*dst));
	if (!dst)
		return -ENOMEM;
	dst->s = s;
	dst->relisten_fd = -1;
	mig_dst_postcopy_init(dst);
	if (mig_uri_is_fd(uri)) {
		ret = dst_alloc_fd(dst, uri);
		if (ret) {
			free(dst);
			return ret;
		}
		goto done;
	}
	ret = dst_listen(uri, &dst->listen_fd, dst->uri, &dst->port, err, sizeof(err));
	if (ret) {
		log_err("incoming: %s", err);
		free(dst);
		return ret;
	}
	mig_job_init(&dst->job, s, &dst_job_ops);
done:
	pthread_mutex_init(&dst->bar_lock, NULL);
	pthread_cond_init(&dst->bar_cond, NULL);
	*port = dst->port;
	*out = &dst->job;
	return 0;
}

/*
 * Under the job lock, by the abort that ends an epoch: wakes every blocked
 * read.  The listener stays for the reconnect, unless the job ends.
 */
static void dst_shut_down(struct mig_job *job, bool job_ends)
{
	struct mig_dst *dst = dst_of(job);

	if (job_ends)
		shutdown(dst->listen_fd, SHUT_RDWR);
	for (unsigned int i = 0; dst->chans && i < dst->nr_chans; i++)
		if (dst->chans[i].fd >= 0)
			shutdown(dst->chans[i].fd, SHUT_RDWR);
}

/* After every abort: the round barrier breaks, its waiters return -ECANCELED. */
static void dst_wake(struct mig_job *job)
{
	struct mig_dst *dst = dst_of(job);

	pthread_mutex_lock(&dst->bar_lock);
	dst->bar_broken = true;
	pthread_cond_broadcast(&dst->bar_cond);
	pthread_mutex_unlock(&dst->bar_lock);
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
	if (mig_job_aborted(&dst->job))
		return -ECANCELED;
	fd = mig_dst_accept4(dst, SOCK_CLOEXEC);
	if (fd < 0)
		return mig_job_aborted(&dst->job) ? -ECANCELED : -errno;
	ret = mig_sock_setup(fd, dst->s->io_timeout_ms);
	if (ret) {
		mig_sock_close(fd);
		return ret;
	}
	*fdp = fd;
	return 0;
}

/* Fails the job; abort tells the source why. */
int mig_dst_fail(struct mig_dst *dst, int err, const char *fmt, ...)
{
	char reason[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(reason, sizeof(reason), fmt, ap);
	va_end(ap);
	mig_job_abort(&dst->job, err, "%s", reason);
	return err;
}

bool mig_dst_hello_refusal(struct mig_dst *dst, const Cleave__Wire__Hello *h, char *why, size_t len)
{
	const struct shm_ctl_header *ch = dst->s->env.ctl->hdr;
	struct mig_session *s = dst->s;
	uint8_t sid[16];
	uint64_t epoch;
	bool same;

	if (h->magic != WIRE_MAGIC) {
		snprintf(why, len, "bad stream magic 0x%" PRIx64, h->magic);
		return true;
	}
	if (h->version != WIRE_VERSION) {
		snprintf(why, len, "unsupported stream version %u (this side speaks %u)",
			 h->version, WIRE_VERSION);
		return true;
	}
	if (h->session_id.len != 16 || h->page_size != SHM_PAGE_SIZE || !h->channels ||
	    h->channels > MIG_MAX_CHANNELS) {
		snprintf(why, len, "bad Hello: page size %u, %u channels", h->page_size,
			 h->channels);
		return true;
	}
	if (h->n_regions != ch->nr_regions) {
		snprintf(why, len, "RAM layout mismatch: source has %zu regions, destination %u",
			 h->n_regions, ch->nr_regions);
		return true;
	}
	for (uint32_t r = 0; r < ch->nr_regions; r++)
		if (h->regions[r]->gpa != ch->regions[r].gpa ||
		    h->regions[r]->size != ch->regions[r].size) {
			snprintf(why, len,
				 "RAM layout mismatch: region %u: source gpa 0x%" PRIx64
				 " size 0x%" PRIx64 ", destination gpa 0x%" PRIx64
				 " size 0x%" PRIx64,
				 r, h->regions[r]->gpa, h->regions[r]->size, ch->regions[r].gpa,
				 ch->regions[r].size);
			return true;
		}
	if (mig_dst_postcopy_refusal(dst, h, why, len))
		return true;
	if (dst->phase == MIG_PHASE_DST_LISTENING)
		return false;
	/* A running session takes its own source back only: the same id, a newer epoch. */
	mig_session_id(s, sid, &epoch, false);
	same = !memcmp(sid, h->session_id.data, 16) &&
	       (h->epoch > epoch || dst->phase == MIG_PHASE_DST_RUNNING);
	if (!same)
		snprintf(why, len, "this destination waits for another migration");
	return !same;
}

int mig_dest_ram_clear(struct mig_job *job)
{
	struct mig_session *s = job->s;
	int state = 0, ret;

	ret = s->env.ops->run_state(s->env.ops_arg, &state);
	if (ret) {
		mig_job_abort(job, ret, "vcpu-proc STATUS: %s", strerror(-ret));
		return ret;
	}
	if (state != MIG_RUN_STATE_INMIGRATE) {
		mig_job_abort(job, -EBUSY,
			      "destination VM is not waiting for an incoming migration (run "
			      "state %d)",
			      state);
		return -EBUSY;
	}
	for (uint32_t r = 0; r < s->env.ctl->hdr->nr_regions; r++)
		if (fallocate(s->env.ram[r].fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0,
			      (off_t)s->env.ram[r].size)) {
			ret = -errno;
			mig_job_abort(job, ret, "region %u: punch hole: %s", r, strerror(errno));
			return ret;
		}
	return 0;
}

/* The source ended the migration and said why: the job ends, no reconnect. */
int mig_dst_source_error(struct mig_dst *dst, const char *why)
{
	mig_job_abort_final(&dst->job, -EPROTO, "source: %s", why);
	return -EPROTO;
}

/* Records @phase; see enum mig_phase for what each allows. */
void mig_dst_set_phase(struct mig_dst *dst, enum mig_phase phase)
{
	dst->phase = phase;
	mig_record_set_phase(dst->s->rec, phase);
}

void mig_dst_round_landed(struct mig_dst *dst, uint64_t generation)
{
	const struct shm_ctl_header *h = dst->s->env.ctl->hdr;

	/* Recorded first: killed in between, the stale round bits are never used. */
	__atomic_store_n(&dst->s->rec->rounds_landed, generation, __ATOMIC_RELEASE);
	for (uint32_t r = 0; r < h->nr_regions; r++)
		shm_bitmap_zero(dst->round[r], h->regions[r].nr_pages);
}

/* Zeroes the received bitmaps and marks them live: before any receive thread. */
static void dst_receivedmap_init(struct mig_dst *dst)
{
	const struct shm_ctl_header *h = dst->s->env.ctl->hdr;

	assert(dst->state == MIG_DST_IDLE);
	for (uint32_t r = 0; r < h->nr_regions; r++) {
		dst->received[r] = shm_ctl_received_bitmap(dst->s->env.ctl, r);
		dst->round[r] = shm_ctl_round_bitmap(dst->s->env.ctl, r);
		shm_bitmap_zero(dst->received[r], h->regions[r].nr_pages);
		shm_bitmap_zero(dst->round[r], h->regions[r].nr_pages);
	}
	__atomic_store_n(&dst->s->rec->rounds_landed, 0, __ATOMIC_RELEASE);
	mig_record_set_receivedmap_live(dst->s->rec, true);
	dst->state = MIG_DST_JOINED; /* live, no thread yet */
}

/* A restarted migrator: the receivedmap its predecessor made live is still live. */
static void dst_receivedmap_adopt(struct mig_dst *dst)
{
	const struct shm_ctl_header *h = dst->s->env.ctl->hdr;

	assert(dst->state == MIG_DST_IDLE && mig_record_receivedmap_live(dst->s->rec));
	for (uint32_t r = 0; r < h->nr_regions; r++) {
		dst->received[r] = shm_ctl_received_bitmap(dst->s->env.ctl, r);
		dst->round[r] = shm_ctl_round_bitmap(dst->s->env.ctl, r);
	}
	dst->state = MIG_DST_JOINED;
}

/* Stop -> join: this connection's receive (and fault) threads are gone; the map stays live. */
static void dst_threads_join(struct mig_dst *dst)
{
	mig_dst_postcopy_stop(dst);
	if (dst->state == MIG_DST_RECEIVING)
		mig_recv_join(dst);
}

/*
 * The one teardown of the receive side: stop -> join -> invalidate.  Safe
 * to call in any state and twice; the receivedmap is invalidated only once
 * every receive thread has been joined (invariant 1).
 */
static void dst_teardown(struct mig_dst *dst)
{
	mig_dst_postcopy_stop(dst);
	switch (dst->state) {
	case MIG_DST_RECEIVING:
		mig_recv_join(dst); /* the caller aborted, or every thread saw FINAL */
				    /* fallthrough */
	case MIG_DST_JOINED:
		assert(dst->state == MIG_DST_JOINED);
		mig_record_set_receivedmap_live(dst->s->rec, false);
		memset(dst->received, 0, sizeof(dst->received));
		memset(dst->round, 0, sizeof(dst->round));
		dst->state = MIG_DST_CLOSED;
		break;
	case MIG_DST_IDLE:
	case MIG_DST_CLOSED:
		break;
	}
}

static int dst_accept_channels(struct mig_dst *dst, const uint8_t *sid)
{
	const struct mig_tls *tls = dst->s->tls;
	uint8_t token[16];
	int ret = mig_chan_token(dst->job.main_fd, sid, token);

	if (ret)
		return mig_dst_fail(dst, ret, "channel token: %s", strerror(-ret));
	for (unsigned int n = 0; n < dst->nr_chans; n++) {
		struct mig_chan_hello ch;
		char err[512];
		int fd = -1;

		ret = dst_accept(dst, (int)dst->s->io_timeout_ms, &fd);
		if (ret)
			return mig_dst_fail(dst, ret, "accepting channel %u of %u: %s", n,
					    dst->nr_chans, strerror(-ret));
		/* Authenticated before its preamble is read, like the main connection. */
		if (tls && mig_tls_accept(tls, fd, dst->s->io_timeout_ms, err, sizeof(err))) {
			mig_sock_close(fd);
			return mig_dst_fail(dst, -EAGAIN, "channel %u of %u: %s", n, dst->nr_chans,
					    err);
		}
		ret = mig_io_read(fd, &ch, sizeof(ch));
		if (!ret && (ch.magic != MIG_CHAN_MAGIC || ch.version != WIRE_VERSION ||
			     memcmp(ch.session_id, token, 16) || ch.index >= dst->nr_chans ||
			     dst->chans[ch.index].fd >= 0))
			ret = -EPROTO;
		if (ret) {
			mig_sock_close(fd);
			/* E.g. a restarted source's Hello where a channel was due: it calls again.
			 */
			return mig_dst_fail(
				dst, ret == -EPROTO ? -EAGAIN : ret, "channel handshake: %s",
				ret == -EPROTO ? "bad magic, session or index" : strerror(-ret));
		}
		mig_job_publish_fd(&dst->job, &dst->chans[ch.index].fd, fd);
	}
	return 0;
}

/* The source closed (or reset) the main connection: nothing it announced will come. */
static bool dst_main_hung_up(struct mig_dst *dst)
{
	struct pollfd pfd = {.fd = dst->job.main_fd, .events = POLLRDHUP};

	return poll(&pfd, 1, 0) > 0 && (pfd.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

/*
 * Waits until every channel passed SYNC <round>, then tells the source.
 * Bounded (docs/MIGRATION.md, "Bounded waits"): an abort breaks the wait; a
 * round after the final one can never complete; and the main connection is
 * watched for the source's hang-up, since the worker does not read it here.
 * Channels silent for the I/O timeout abort the job from their threads.
 */
static int dst_round_ack(struct mig_dst *dst, uint64_t round)
{
	Cleave__Wire__WireMsg m = CLEAVE__WIRE__WIRE_MSG__INIT;
	Cleave__Wire__RoundAck ack = CLEAVE__WIRE__ROUND_ACK__INIT;
	uint64_t landed = 0;
	bool broken, ended = false;
	int ret;

	pthread_mutex_lock(&dst->bar_lock);
	/* Generation g means rounds 0..g-1 are complete on every channel. */
	while (dst->bar_generation <= round && !dst->bar_broken && !dst->bar_ended) {
		struct timespec ts;

		mig_deadline_after_ms(&ts, DST_HANGUP_POLL_MS);
		if (pthread_cond_timedwait(&dst->bar_cond, &dst->bar_lock, &ts) != ETIMEDOUT)
			continue;
		pthread_mutex_unlock(&dst->bar_lock);
		if (dst_main_hung_up(dst))
			return mig_dst_fail(
				dst, -ECONNRESET,
				"main channel: source closed the connection while round "
				"%" PRIu64 " was due",
				round);
		pthread_mutex_lock(&dst->bar_lock);
	}
	broken = dst->bar_broken;
	if (dst->bar_generation <= round && dst->bar_ended) {
		ended = true;
		landed = dst->bar_generation;
	}
	pthread_mutex_unlock(&dst->bar_lock);
	if (broken)
		return -ECANCELED;
	if (ended)
		return mig_dst_fail(dst, -EPROTO,
				    "protocol error: Round %" PRIu64
				    " announced after the final round %" PRIu64,
				    round, landed - 1);
	ack.round = round;
	m.body_case = CLEAVE__WIRE__WIRE_MSG__BODY_ROUND_ACK;
	m.round_ack = &ack;
	pthread_mutex_lock(&dst->job.tx_lock);
	ret = mig_msg_send(dst->job.main_fd, &m);
	pthread_mutex_unlock(&dst->job.tx_lock);
	if (ret)
		mig_job_abort(&dst->job, ret, "main channel: send: %s", strerror(-ret));
	return ret;
}

/* Until all RAM landed, or the switch to postcopy: the DeviceState or Postcopy message in *dsm. */
static int dst_receive(struct mig_dst *dst, Cleave__Wire__WireMsg **dsm)
{
	struct mig_session *s = dst->s;
	Cleave__Wire__WireMsg *m = NULL;
	int ret;

	for (;;) {
		ret = mig_msg_recv(dst->job.main_fd, &m);
		if (ret)
			return mig_dst_fail(dst, ret, "main channel: %s",
					    ret == -ECONNRESET ? "source closed the connection"
							       : strerror(-ret));
		switch (m->body_case) {
		case CLEAVE__WIRE__WIRE_MSG__BODY_ROUND:
			atomic_store(&s->ctr.rounds, m->round->round + 1);
			ret = dst_round_ack(dst, m->round->round);
			mig_session_record_sync(s); /* the counters, for a restarted migrator */
			if (ret) {
				cleave__wire__wire_msg__free_unpacked(m, NULL);
				return ret;
			}
			break;
		case CLEAVE__WIRE__WIRE_MSG__BODY_PROGRESS:
			break;
		case CLEAVE__WIRE__WIRE_MSG__BODY_DEVICE_STATE:
		case CLEAVE__WIRE__WIRE_MSG__BODY_POSTCOPY:
			*dsm = m;
			return 0;
		case CLEAVE__WIRE__WIRE_MSG__BODY_ERROR:
			ret = mig_dst_source_error(dst, m->error->reason);
			cleave__wire__wire_msg__free_unpacked(m, NULL);
			return ret;
		default:
			ret = mig_dst_fail(dst, -EPROTO, "protocol error: unexpected message %d",
					   (int)m->body_case);
			cleave__wire__wire_msg__free_unpacked(m, NULL);
			return ret;
		}
		cleave__wire__wire_msg__free_unpacked(m, NULL);
	}
}

int mig_dst_send(struct mig_dst *dst, Cleave__Wire__WireMsg *m, int body, void *msg)
{
	int ret;

	m->body_case = body;
	m->hello_ack = msg; /* any member of the oneof: they share storage */
	pthread_mutex_lock(&dst->job.tx_lock);
	ret = mig_msg_send(dst->job.main_fd, m);
	pthread_mutex_unlock(&dst->job.tx_lock);
	if (ret)
		mig_job_abort(&dst->job, ret, "main channel: send: %s", strerror(-ret));
	return ret;
}

/* The guest is ours (Commit received, recorded): run it. */
static int dst_run_guest(struct mig_dst *dst)
{
	struct mig_session *s = dst->s;
	int ret = s->env.ops->resume(s->env.ops_arg); /* idempotent: a restart repeats it */

	if (ret)
		return mig_dst_fail(dst, ret, "vcpu-proc RESUME: %s (guest runs nowhere)",
				    strerror(-ret));
	mig_dst_set_phase(dst, MIG_PHASE_DST_RUNNING);
	return 0;
}

/* LOADED: waits for the source's Commit, then runs the guest and says Complete. */
static int dst_commit(struct mig_dst *dst)
{
	Cleave__Wire__WireMsg m = CLEAVE__WIRE__WIRE_MSG__INIT;
	Cleave__Wire__Complete complete = CLEAVE__WIRE__COMPLETE__INIT;
	Cleave__Wire__WireMsg *in;
	int ret;

	ret = mig_msg_recv(dst->job.main_fd, &in);
	if (ret)
		return mig_dst_fail(dst, ret, "main channel: waiting for Commit: %s",
				    strerror(-ret));
	if (in->body_case != CLEAVE__WIRE__WIRE_MSG__BODY_COMMIT) {
		ret = in->body_case == CLEAVE__WIRE__WIRE_MSG__BODY_ERROR
			      ? mig_dst_source_error(dst, in->error->reason)
			      : mig_dst_fail(dst, -EPROTO, "protocol error: expected Commit");
		cleave__wire__wire_msg__free_unpacked(in, NULL);
		return ret;
	}
	cleave__wire__wire_msg__free_unpacked(in, NULL);
	/* The source will never run the guest again: it is ours now. */
	mig_dst_set_phase(dst, MIG_PHASE_DST_COMMITTED);
	ret = dst_run_guest(dst);
	if (ret)
		return ret;
	if (mig_dst_send(dst, &m, CLEAVE__WIRE__WIRE_MSG__BODY_COMPLETE, &complete))
		log_warn("source did not get Complete; the guest runs here");
	return 0;
}

static void dst_log_ram_hash(struct mig_dst *dst)
{
	struct mig_session *s = dst->s;

	for (uint32_t r = 0; r < s->env.ctl->hdr->nr_regions; r++)
		log_info("switchover RAM hash region %u %016" PRIx64, r,
			 shm_region_hash(&s->env.ram[r]));
}

int mig_dst_channels_final(struct mig_dst *dst, uint64_t final_round)
{
	if (mig_job_aborted(&dst->job))
		return -ECANCELED;
	for (unsigned int i = 0; i < dst->nr_chans; i++)
		if (!dst->chans[i].done || dst->chans[i].final_round != final_round)
			return mig_dst_fail(dst, -EPROTO,
					    "channel %u ended in round %" PRIu64
					    ", the source's last round is %" PRIu64,
					    i, dst->chans[i].final_round, final_round);
	return 0;
}

static int dst_finish(struct mig_dst *dst, const Cleave__Wire__DeviceState *ds)
{
	struct mig_session *s = dst->s;
	const struct mig_vm_ops *ops = s->env.ops;
	Cleave__Wire__WireMsg m = CLEAVE__WIRE__WIRE_MSG__INIT;
	Cleave__Wire__Loaded loaded = CLEAVE__WIRE__LOADED__INIT;
	int ret;

	uint64_t t0 = mig_now_ns(), t1, t2;

	/* All RAM is final only once every channel passed FINAL and was joined. */
	mig_recv_join(dst);
	t1 = mig_now_ns();
	ret = mig_dst_channels_final(dst, ds->final_round);
	if (ret)
		return ret;
	if (MIG_HOOK(s, ram_hash))
		dst_log_ram_hash(dst);
	/* Invariant 3: the state (and its clock) is loaded only after RAM is final. */
	ret = ops->load_state(s->env.ops_arg, ds->state.data, ds->state.len);
	if (ret)
		return mig_dst_fail(dst, ret == -ETIMEDOUT ? -EIO : ret, "vcpu-proc LOAD_STATE: %s",
				    strerror(-ret));
	t2 = mig_now_ns();
	log_debug("device state: channels done after %lu us, LOAD_STATE %lu us",
		  (unsigned long)(t1 - t0) / 1000, (unsigned long)(t2 - t1) / 1000);
	if (!mig_record_lock(s->rec)) {
		s->rec->final_round = ds->final_round;
		mig_record_unlock(s->rec);
	}
	mig_dst_set_phase(dst, MIG_PHASE_DST_LOADED);
	/* Only now: killed before LOADED was recorded, a restart still needs the map. */
	dst_teardown(dst);
	ret = mig_dst_send(dst, &m, CLEAVE__WIRE__WIRE_MSG__BODY_LOADED, &loaded);
	return ret ? ret : dst_commit(dst);
}

/* Adds one region's @map to @maps (a HelloAck field) as runs or raw words. */
static int dst_report_map(Cleave__Wire__PageMap ***maps, size_t *n, const uint64_t *map,
			  uint64_t nbits, uint32_t region)
{
	Cleave__Wire__PageMap *pm = calloc(1, sizeof(*pm)), **grown;
	int ret;

	if (!pm)
		return -ENOMEM;
	ret = mig_pagemap_encode(map, nbits, region, pm);
	grown = ret ? NULL : realloc(*maps, (*n + 1) * sizeof(**maps));
	if (!grown) {
		mig_pagemap_release(pm);
		free(pm);
		return ret ? ret : -ENOMEM;
	}
	*maps = grown;
	(*maps)[(*n)++] = pm;
	return 0;
}

static void dst_report_free(Cleave__Wire__HelloAck *ack)
{
	for (size_t i = 0; i < ack->n_received; i++) {
		mig_pagemap_release(ack->received[i]);
		free(ack->received[i]);
	}
	for (size_t i = 0; i < ack->n_round; i++) {
		mig_pagemap_release(ack->round[i]);
		free(ack->round[i]);
	}
	for (size_t i = 0; i < ack->n_needed; i++) {
		mig_pagemap_release(ack->needed[i]);
		free(ack->needed[i]);
	}
	free(ack->received);
	free(ack->round);
	free(ack->needed);
}

/*
 * HelloAck: what this side holds.  While receiving: every page of rounds
 * < rounds_landed, the pages of the round map, and (until round 0 landed)
 * the received map.  The round map is forgotten once sent: the source
 * merges it into its next round, so an old entry could only mask a newer
 * copy of the same page in flight later.
 */
static int dst_report(struct mig_dst *dst)
{
	const struct shm_ctl_header *h = dst->s->env.ctl->hdr;
	Cleave__Wire__WireMsg m = CLEAVE__WIRE__WIRE_MSG__INIT;
	Cleave__Wire__HelloAck ack = CLEAVE__WIRE__HELLO_ACK__INIT;
	int ret = 0;

	ack.phase = dst->phase;
	ack.rounds_landed = __atomic_load_n(&dst->s->rec->rounds_landed, __ATOMIC_ACQUIRE);
	if (!mig_record_lock(dst->s->rec)) {
		ack.final_round = dst->s->rec->final_round;
		mig_record_unlock(dst->s->rec);
	}
	for (uint32_t r = 0; r < h->nr_regions && mig_dst_in_postcopy(dst); r++) {
		ret = dst_report_map(&ack.needed, &ack.n_needed, dst->needed[r],
				     h->regions[r].nr_pages, r);
		if (ret)
			break;
	}
	for (uint32_t r = 0; !ret && r < h->nr_regions && dst->phase == MIG_PHASE_DST_RECEIVING;
	     r++) {
		ret = dst_report_map(&ack.round, &ack.n_round, dst->round[r],
				     h->regions[r].nr_pages, r);
		if (!ret && !ack.rounds_landed)
			ret = dst_report_map(&ack.received, &ack.n_received, dst->received[r],
					     h->regions[r].nr_pages, r);
		if (ret)
			break;
	}
	if (!ret)
		ret = mig_dst_send(dst, &m, CLEAVE__WIRE__WIRE_MSG__BODY_HELLO_ACK, &ack);
	else
		mig_dst_fail(dst, ret, "resume report: %s", strerror(-ret));
	dst_report_free(&ack);
	for (uint32_t r = 0; !ret && r < h->nr_regions && dst->phase == MIG_PHASE_DST_RECEIVING;
	     r++)
		shm_bitmap_zero(dst->round[r], h->regions[r].nr_pages);
	return ret;
}

/* The first Hello of a session (accepted by mig_dst_hello_refusal): fresh RAM, a live receivedmap.
 */
static int dst_session_start(struct mig_dst *dst, const Cleave__Wire__Hello *h)
{
	struct mig_session *s = dst->s;
	int ret;

	ret = mig_dest_ram_clear(&dst->job);
	if (ret)
		return ret;
	mig_session_set_id(s, h->session_id.data, h->epoch);
	dst_receivedmap_init(dst);
	mig_dst_set_phase(dst, MIG_PHASE_DST_RECEIVING);
	return 0;
}

/* A Hello of the running session (a reconnect, accepted by mig_dst_hello_refusal). */
static void dst_session_continue(struct mig_dst *dst, const Cleave__Wire__Hello *h)
{
	struct mig_session *s = dst->s;

	mig_session_set_id(s, NULL, h->epoch);
}

/* Fresh channel slots for this connection (the Hello's channel count). */
static int dst_channels_alloc(struct mig_dst *dst, unsigned int n)
{
	struct mig_recv_chan *chans = calloc(n, sizeof(*chans)), *old;

	if (!chans)
		return mig_dst_fail(dst, -ENOMEM, "out of memory");
	for (unsigned int i = 0; i < n; i++) {
		chans[i].dst = dst;
		chans[i].index = i;
		chans[i].fd = -1;
	}
	pthread_mutex_lock(&dst->job.lock); /* abort walks the channels */
	old = dst->chans;
	for (unsigned int i = 0; old && i < dst->nr_chans; i++)
		if (old[i].fd >= 0)
			mig_sock_close(old[i].fd);
	dst->chans = chans;
	dst->nr_chans = n;
	pthread_mutex_unlock(&dst->job.lock);
	free(old);
	return 0;
}

/* This connection's channels, and their receive threads from round @first_round on. */
static int dst_channels_start(struct mig_dst *dst, const uint8_t *sid, uint64_t first_round)
{
	struct mig_session *s = dst->s;
	int ret;

	ret = dst_accept_channels(dst, sid);
	if (ret)
		return ret;
	pthread_mutex_lock(&dst->bar_lock);
	dst->bar_generation = first_round;
	dst->bar_waiting = 0;
	dst->bar_finals = 0;
	dst->bar_ended = false;
	dst->bar_broken = false;
	pthread_mutex_unlock(&dst->bar_lock);
	dst->first_round = first_round;
	assert(dst->state == MIG_DST_JOINED && mig_record_receivedmap_live(s->rec));
	dst->state = MIG_DST_RECEIVING;
	ret = mig_recv_start(dst);
	if (ret)
		return mig_dst_fail(dst, ret, "receive threads: %s", strerror(-ret));
	return 0;
}

/* Receives RAM from @first_round on, then completes (or switches to postcopy). */
static int dst_transfer(struct mig_dst *dst, const uint8_t *sid, uint64_t first_round)
{
	struct mig_session *s = dst->s;
	Cleave__Wire__WireMsg *in = NULL;
	int ret;

	ret = dst_channels_start(dst, sid, first_round);
	if (ret)
		return ret;
	mig_session_set_status(s, MIG_STATUS_ACTIVE);
	ret = dst_receive(dst, &in);
	if (ret)
		return ret;
	if (in->body_case == CLEAVE__WIRE__WIRE_MSG__BODY_POSTCOPY)
		ret = mig_dst_postcopy_switch(dst, in->postcopy);
	else
		ret = dst_finish(dst, in->device_state);
	cleave__wire__wire_msg__free_unpacked(in, NULL);
	return ret;
}

/* Milliseconds left to wait for the source: -1 before it ever came. */
static int dst_wait_ms(struct mig_dst *dst)
{
	/* A guest that runs here waits for its pages as long as it takes (postcopy-paused). */
	if (dst->phase == MIG_PHASE_DST_LISTENING || dst->phase == MIG_PHASE_DST_POSTCOPY)
		return -1;
	return mig_job_reconnect_left_ms(&dst->job);
}

/* One connection of the source, from its Hello to the end or to its loss. */
static int dst_epoch(struct mig_dst *dst)
{
	struct mig_session *s = dst->s;
	Cleave__Wire__WireMsg *in = NULL;
	uint64_t next_round;
	uint8_t sid[16];
	bool resumed;
	int fd = -1, ret, wait;

	ret = mig_job_wait_released(&dst->job); /* migrate-pause holds it */
	if (ret < 0)
		return ret;
	wait = dst_wait_ms(dst);
	ret = wait ? mig_dst_wait_source(dst, wait, &fd, &in) : -ETIMEDOUT;
	if (ret == -ETIMEDOUT)
		return mig_dst_fail(dst, -ETIME,
				    "lost the source (%s) and no reconnect within %llu ms",
				    dst->job.lost_reason,
				    (unsigned long long)MIG_SETTING(s, reconnect_timeout));
	if (ret && dst->mux) {
		char why[256];

		mig_mux_reason(dst->mux, why, sizeof(why));
		return mig_dst_fail(dst, ret, "accept: %s",
				    why[0] ? why : "the fd: connection is closed");
	}
	if (ret)
		return mig_dst_fail(dst, ret, "accept: %s", strerror(-ret));
	mig_job_publish_fd(&dst->job, &dst->job.main_fd, fd);
	resumed = dst->phase != MIG_PHASE_DST_LISTENING;
	if (resumed) {
		dst_session_continue(dst, in->hello);
	} else {
		mig_session_set_status(s, MIG_STATUS_SETUP);
		ret = dst_session_start(dst, in->hello);
	}
	mig_session_id(s, sid, NULL, false);
	next_round = in->hello->next_round;
	if (!ret && (dst->phase == MIG_PHASE_DST_RECEIVING || mig_dst_in_postcopy(dst)))
		ret = dst_channels_alloc(dst, in->hello->channels);
	cleave__wire__wire_msg__free_unpacked(in, NULL);
	if (ret)
		return ret;
	ret = dst_report(dst);
	if (ret)
		return ret;
	if (resumed) {
		atomic_fetch_add(&s->ctr.resumes, 1);
		atomic_store(&s->ctr.resume_time_ms, mig_job_reconnected(&dst->job));
		mig_session_detail_event(s, "resumed");
	}
	dst->job.lost_ns = 0;
	switch (dst->phase) {
	case MIG_PHASE_DST_RECEIVING:
		return dst_transfer(dst, sid, next_round);
	case MIG_PHASE_DST_LOADED:
		return dst_commit(dst);
	case MIG_PHASE_DST_PC_LOADED:
	case MIG_PHASE_DST_POSTCOPY:
		if (dst->phase == MIG_PHASE_DST_POSTCOPY)
			mig_session_set_status(s, MIG_STATUS_POSTCOPY_ACTIVE);
		ret = dst_channels_start(dst, sid, next_round);
		return ret ? ret : mig_dst_postcopy_run(dst);
	case MIG_PHASE_DST_RUNNING:
		return 0; /* the source learnt it from the report */
	default:
		return mig_dst_fail(dst, -EPROTO, "destination in phase %u", dst->phase);
	}
}

/*
 * A source that ends the migration (cancel, its own failure) sends Error on
 * the main connection, then closes everything: the receive threads may see
 * a channel close first.  Whatever is queued on the main connection is
 * still readable after our shutdown: an Error there ends the job.
 */
static bool dst_source_said_error(struct mig_dst *dst, char *reason, size_t len)
{
	Cleave__Wire__WireMsg *m;
	bool said = false;

	while (dst->job.main_fd >= 0 && mig_sock_readable(dst->job.main_fd) && !said) {
		if (mig_msg_recv(dst->job.main_fd, &m))
			break;
		said = m->body_case == CLEAVE__WIRE__WIRE_MSG__BODY_ERROR;
		if (said)
			snprintf(reason, len, "source: %s", m->error->reason);
		cleave__wire__wire_msg__free_unpacked(m, NULL);
	}
	return said;
}

/*
 * After a failed connection: 0 when the job waits for the source again
 * (threads joined, fds closed, the abort forgotten), else the job's error.
 */
static int dst_may_reconnect(struct mig_dst *dst, int ret)
{
	struct mig_job *job = &dst->job;
	uint64_t timeout = MIG_SETTING(dst->s, reconnect_timeout);
	bool retry, lost_now = false;

	mig_job_abort(job, ret, "%s", strerror(-ret)); /* no-op when already aborted */
	dst_threads_join(dst);
	pthread_mutex_lock(&job->lock);
	ret = job->err ? job->err : ret;
	/* A guest that runs here in postcopy waits for its pages whatever the timeout. */
	retry = !job->cancelled && (timeout || job->held || dst->phase == MIG_PHASE_DST_POSTCOPY) &&
		(ret == -EAGAIN ||
		 (mig_err_retriable(ret) && dst->phase != MIG_PHASE_DST_LISTENING));
	if (retry && ret != -EAGAIN &&
	    dst_source_said_error(dst, job->reason, sizeof(job->reason))) {
		retry = false;
		ret = job->err = -EPROTO;
	}
	if (retry) {
		/* A stray connection (-EAGAIN) is no loss of the source. */
		lost_now = ret != -EAGAIN && mig_job_mark_lost(job, job->reason);
		if (!job->lost_ns)
			job->lost_ns = mig_now_ns();
		mig_job_reset_epoch_locked(job);
	}
	pthread_mutex_unlock(&job->lock);
	if (lost_now) {
		log_warn("lost the source (%s); waiting for it to reconnect", job->lost_reason);
		if (dst->phase == MIG_PHASE_DST_POSTCOPY)
			mig_session_set_status(dst->s, MIG_STATUS_POSTCOPY_PAUSED);
		mig_session_detail_event(dst->s, "disconnected");
	}
	return retry ? 0 : ret;
}

/*
 * After completion: a source that lost our Complete reconnects to learn
 * the outcome.  Answer it (the report says RUNNING) until reconnect-timeout
 * or until the session stops us.
 */
static void dst_linger(struct mig_dst *dst)
{
	uint64_t timeout = MIG_SETTING(dst->s, reconnect_timeout);
	uint64_t end = mig_now_ns() + timeout * 1000000ull;

	pthread_mutex_lock(&dst->job.lock);
	dst->job.aborted = false;
	pthread_mutex_unlock(&dst->job.lock);
	for (;;) {
		Cleave__Wire__WireMsg m = CLEAVE__WIRE__WIRE_MSG__INIT;
		Cleave__Wire__HelloAck ack = CLEAVE__WIRE__HELLO_ACK__INIT;
		Cleave__Wire__WireMsg *in = NULL;
		int fd = -1;

		if (mig_job_cancelled(&dst->job) || mig_now_ns() >= end)
			break;
		/* Its own source only (mig_dst_hello_refusal in phase RUNNING). */
		if (mig_dst_wait_source(dst, (int)((end - mig_now_ns()) / 1000000) + 1, &fd, &in))
			break;
		ack.phase = MIG_PHASE_DST_RUNNING;
		m.body_case = CLEAVE__WIRE__WIRE_MSG__BODY_HELLO_ACK;
		m.hello_ack = &ack;
		if (!mig_msg_send(fd, &m))
			log_info("told a reconnecting source that the guest runs here");
		cleave__wire__wire_msg__free_unpacked(in, NULL);
		mig_sock_close(fd);
	}
}

/* A restarted migrator continues the recorded session. */
static int dst_load(struct mig_dst *dst)
{
	struct mig_session *s = dst->s;

	dst->phase = mig_record_phase(s->rec);
	dst->job.lost_ns = s->resume_start_ns;
	snprintf(dst->job.lost_reason, sizeof(dst->job.lost_reason), "migrator restarted");
	if (dst->phase == MIG_PHASE_DST_RECEIVING || mig_dst_in_postcopy(dst)) {
		if (!mig_record_receivedmap_live(s->rec))
			return mig_dst_fail(dst, -EPROTO,
					    "session record: receiving without a live "
					    "receivedmap");
		dst_receivedmap_adopt(dst);
	}
	/* Killed between LOADED and the invalidation: no thread of ours can write it. */
	if ((dst->phase == MIG_PHASE_DST_LOADED || dst->phase == MIG_PHASE_DST_COMMITTED ||
	     dst->phase == MIG_PHASE_DST_RUNNING) &&
	    mig_record_receivedmap_live(s->rec))
		mig_record_set_receivedmap_live(s->rec, false);
	/* Killed during a switch to postcopy: the VM may hold a registration; precopy finishes. */
	if (dst->phase == MIG_PHASE_DST_RECEIVING && s->env.ops->postcopy &&
	    s->env.ops->postcopy->end(s->env.ops_arg, true))
		log_warn("vcpu-proc: postcopy end of an unfinished switch failed");
	if (mig_dst_in_postcopy(dst))
		return mig_dst_postcopy_adopt(dst);
	/* Killed between Commit and RESUME: the guest is ours, run it now. */
	if (dst->phase == MIG_PHASE_DST_COMMITTED)
		return dst_run_guest(dst);
	return 0;
}

static int dst_run(struct mig_dst *dst)
{
	struct mig_session *s = dst->s;
	int ret;

	if (s->resuming) {
		ret = dst_load(dst);
		if (ret)
			return ret;
		mig_session_detail_event(s, "restarted");
		if (dst->phase == MIG_PHASE_DST_RUNNING)
			return 0;
	} else {
		if (!mig_record_lock(s->rec)) {
			snprintf(s->rec->uri, sizeof(s->rec->uri), "%s", dst->uri);
			s->rec->rounds_landed = 0;
			s->rec->final_round = 0;
			mig_record_unlock(s->rec);
		}
		mig_dst_set_phase(dst, MIG_PHASE_DST_LISTENING);
		mig_session_record_sync(s);
	}
	for (;;) {
		ret = dst_epoch(dst);
		if (!ret)
			return 0;
		ret = dst_may_reconnect(dst, ret);
		if (ret)
			return ret;
	}
}

static void *dst_worker(void *arg)
{
	struct mig_dst *dst = dst_of(arg);
	char reason[256] = "";
	int ret;

	log_set_thread(dst_job_ops.thread_name);
	ret = dst_run(dst);
	if (ret)
		mig_job_abort(&dst->job, ret, "%s", strerror(-ret)); /* first reason wins */
	dst_teardown(dst);
	if (ret)
		ret = mig_job_error(&dst->job, ret, reason, sizeof(reason));
	if (ret && dst->phase == MIG_PHASE_DST_RUNNING) {
		log_err("after the commit: %s (the guest is ours)", reason);
		ret = 0;
	}
	/*
	 * The guest never ran: the VM drops its registration (its RAM is
	 * incomplete, and a new incoming migration clears it).
	 */
	if (ret && dst->phase == MIG_PHASE_DST_PC_LOADED) {
		if (dst->s->env.ops->postcopy->end(dst->s->env.ops_arg, true))
			log_warn("vcpu-proc: postcopy end after a failed migration failed");
		mig_session_set_missing(dst->s, false);
	}
	/*
	 * The guest runs and lacks pages nobody can give any more: whatever
	 * touches one waits for good (query-migrate lists them), unless the
	 * operator said to fill them with zeros.
	 */
	if (ret && dst->phase == MIG_PHASE_DST_POSTCOPY) {
		if (atomic_load(&dst->pc_zero_fill))
			mig_dst_postcopy_zero_fill(dst);
		else
			log_err("postcopy failed: %" PRIu64 " pages of the guest are lost",
				(uint64_t)atomic_load(&dst->needed_left));
	}
	mig_record_set_phase(dst->s->rec, ret ? MIG_PHASE_NONE : MIG_PHASE_DST_RUNNING);
	/*
	 * An fd: URI's fd ends with the job, after what the engine wrote left;
	 * nothing could reconnect through it to ask about the outcome.
	 */
	if (dst->mux)
		mig_mux_end(dst->mux, dst->s->io_timeout_ms);
	mig_session_finish(dst->s, ret, reason);
	if (!ret && !dst->mux)
		dst_linger(dst);
	return NULL;
}

static void dst_free(struct mig_job *job)
{
	struct mig_dst *dst = dst_of(job);

	mig_mux_free(dst->mux); /* first: its thread may abort the job */
	/* The worker was joined: its teardown left the receive side CLOSED. */
	assert(dst->state == MIG_DST_IDLE || dst->state == MIG_DST_CLOSED);
	for (unsigned int i = 0; dst->chans && i < dst->nr_chans; i++)
		if (dst->chans[i].fd >= 0)
			mig_sock_close(dst->chans[i].fd);
	close(dst->listen_fd);
	if (dst->relisten_fd >= 0) {
		close(dst->relisten_fd);
		if (mig_uri_is_unix(dst->relisten_uri))
			unlink(dst->relisten_uri + 5);
	}
	/* Its socket file goes with the listener (a killed migrator's is replaced on restart). */
	if (mig_uri_is_unix(dst->uri))
		unlink(dst->uri + 5);
	pthread_cond_destroy(&dst->bar_cond);
	pthread_mutex_destroy(&dst->bar_lock);
	pthread_cond_destroy(&dst->pc_cond);
	pthread_mutex_destroy(&dst->pc_lock);
	mig_job_fini(&dst->job);
	free(dst->chans);
	free(dst);
}
