// SPDX-License-Identifier: GPL-2.0-only
/*
 * cleave-vcpu's end of the postcopy link (postcopy-link.h): a reader
 * thread that checks and acts on the migrator's messages, and a taker
 * thread that sends the fault service's requests as FAULTS.
 *
 * The migrator is the less trusted peer: a message is received into
 * private memory (its header on the stack, page data in a page-aligned
 * buffer so UFFDIO_COPY needs no bounce), every field is checked against
 * what this server registered, and the needed maps are read from the
 * shared control segment once, into private copies.
 *
 * A peer that goes away (killed migrator) is not an event here: the
 * launcher keeps a copy of the migrator's end and hands it to the next
 * migrator, so the link stays the same socket.  recv() returning 0 or an
 * error is waited out with a backoff; nothing is unregistered and waiting
 * faults stay waiting (never completed with zero pages).  A send never
 * blocks for long (MSG_DONTWAIT, then poll() with a bound and the stop
 * eventfd), so stop always gets both threads back.
 */
#include "vcpu-proc/postcopy-link.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "log/log.h"
#include "proto/postcopy-link.h"

/*
 * The taker's wait for requests: also how long END and stop wait for it
 * to let go of the fault service (it cannot be woken otherwise without
 * stopping the service).
 */
#define PCLINK_TAKE_MS 50
/* A REPLY or ERROR waits this long for room, then is dropped (the migrator asks again). */
#define PCLINK_REPLY_MS 1000
/* The taker's slice of waiting for room for FAULTS, between checks of stop and AGAIN. */
#define PCLINK_SEND_SLICE_MS 100
/* Backoff on a link that reports EOF or an error: from 10 ms, doubling, up to this. */
#define PCLINK_BACKOFF_MAX_MS 1000
/* Refusals logged; the rest are only counted (a hostile peer must not flood the log). */
#define PCLINK_LOG_REFUSED 16

#define PCLINK_DATA_MAX (PCLINK_MAX_PAGES * SHM_PAGE_SIZE)

struct pclink_server {
	int fd;			    /* not owned */
	struct region_table *table; /* not owned */
	const struct shm_ctl *ctl;  /* not owned; only its header copy and dirty maps are read */
	int stop_efd;		    /* written once at stop; stays readable: wakes every poll() */
	atomic_bool stopping;	    /* set once at stop, before stop_efd is written */
	bool running;		    /* threads started; the caller of start/stop only */
	pthread_t reader, taker;
	atomic_bool again; /* AGAIN: set by the reader, taken by the taker */

	/*
	 * The reader's own (and stop's, once the reader is joined): what this
	 * server registered, to check a PLACE without asking the service.
	 */
	bool registered[REGION_MAX];
	uint64_t pages[REGION_MAX];
	struct fault_service *svc; /* the service; fs below is its published copy */
	/*
	 * Given at start (not owned, immutable): the service LISTEN registers
	 * with, started before the process's filter (which refuses opening
	 * /dev/userfaultfd); it outlives the server.  NULL: LISTEN starts one
	 * and the last END stops it.
	 */
	struct fault_service *given;
	uint8_t *data;	     /* PLACE data; page aligned */
	uint64_t backoff_ms; /* 0: the link reads fine */

	/*
	 * Protects fs (the pointer, not the service) and fs_users.  fs is svc
	 * published once the regions are registered, for the taker and stats,
	 * which use the service as users: fs_users counts them, and svc is
	 * stopped only after fs went NULL and fs_users reached 0 (cond).  A
	 * leaf: nothing is taken while it is held.
	 */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct fault_service *fs;
	unsigned int fs_users;

	atomic_uint_fast64_t msgs, refused, place_failed, faults_sent, send_failed;
};

static int64_t pclink_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Sleeps up to @ms, less if stop comes.  True when stopping. */
static bool pclink_pause(struct pclink_server *srv, int ms)
{
	struct pollfd pfd = {.fd = srv->stop_efd, .events = POLLIN};

	if (!atomic_load(&srv->stopping))
		poll(&pfd, 1, ms);
	return atomic_load(&srv->stopping);
}

/* The service for a user (taker, stats), or NULL; pclink_fs_put() after. */
static struct fault_service *pclink_fs_get(struct pclink_server *srv)
{
	struct fault_service *fs;

	pthread_mutex_lock(&srv->lock);
	fs = srv->fs;
	if (fs)
		srv->fs_users++;
	pthread_mutex_unlock(&srv->lock);
	return fs;
}

static void pclink_fs_put(struct pclink_server *srv)
{
	pthread_mutex_lock(&srv->lock);
	if (--srv->fs_users == 0)
		pthread_cond_broadcast(&srv->cond);
	pthread_mutex_unlock(&srv->lock);
}

/* Unpublishes the service and waits until no user is in it; the caller then stops svc. */
static void pclink_fs_retire(struct pclink_server *srv)
{
	pthread_mutex_lock(&srv->lock);
	srv->fs = NULL;
	while (srv->fs_users)
		pthread_cond_wait(&srv->cond, &srv->lock);
	pthread_mutex_unlock(&srv->lock);
}

/*
 * Sends one message (@h, then @len bytes of @body), waiting at most
 * @timeout_ms for room.  0, -ETIMEDOUT, -ECANCELED at stop, or the send's
 * error (a gone peer: -EPIPE, -ECONNRESET...).  A SOCK_SEQPACKET send is
 * whole or nothing, so the reader's replies and the taker's FAULTS never
 * interleave and need no lock.
 */
static int pclink_send(struct pclink_server *srv, const struct pclink_hdr *h, const void *body,
		       size_t len, int timeout_ms)
{
	struct iovec iov[2] = {{.iov_base = (void *)h, .iov_len = sizeof(*h)},
			       {.iov_base = (void *)body, .iov_len = len}};
	struct msghdr msg = {.msg_iov = iov, .msg_iovlen = len ? 2 : 1};
	int64_t end = pclink_now_ms() + timeout_ms;

	for (;;) {
		struct pollfd pfd[2] = {{.fd = srv->fd, .events = POLLOUT},
					{.fd = srv->stop_efd, .events = POLLIN}};
		ssize_t n = sendmsg(srv->fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
		int64_t left;

		if (n >= 0)
			return (size_t)n == sizeof(*h) + len ? 0 : -EMSGSIZE;
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			return -errno;
		left = end - pclink_now_ms();
		if (left <= 0)
			return -ETIMEDOUT;
		if (poll(pfd, 2, (int)left) < 0 && errno != EINTR)
			return -errno;
		if (pfd[1].revents)
			return -ECANCELED;
	}
}

/* REPLY or ERROR; a reply that cannot be sent is dropped: LISTEN and END are asked again. */
static void pclink_reply(struct pclink_server *srv, uint32_t type, int err, uint32_t region,
			 uint64_t page)
{
	struct pclink_hdr h = {
		.magic = PCLINK_MAGIC, .type = type, .region = region, .page = page, .err = err};
	int ret = pclink_send(srv, &h, NULL, 0, PCLINK_REPLY_MS);

	if (ret && ret != -ECANCELED) {
		atomic_fetch_add(&srv->send_failed, 1);
		log_warn("postcopy link: %s (%d) not sent: %s",
			 type == PCLINK_REPLY ? "reply" : "error", err, strerror(-ret));
	}
}

/*
 * Unregisters every region this server registered; @force: no vCPU can
 * run.  Regions still missing pages stay registered (-EBUSY) unless forced.
 * Returns the first error.  Holds the table shared and each region
 * exclusive, as fault.h requires.
 */
static int pclink_unregister_all(struct pclink_server *srv, bool force)
{
	int ret = 0;

	for (unsigned int i = 0; i < REGION_MAX; i++) {
		struct region *r;
		int err;

		if (!srv->registered[i])
			continue;
		region_table_lock_read(srv->table);
		r = region_table_get(srv->table, i);
		if (r) {
			region_lock_write(r);
			err = fault_region_unregister(srv->svc, r, force);
			region_unlock_write(r);
		} else {
			err = -ENOENT; /* removed under us: the service keeps its maps */
		}
		region_table_unlock_read(srv->table);
		if (!err)
			srv->registered[i] = false;
		else if (!ret)
			ret = err;
	}
	return ret;
}

static bool pclink_any_registered(const struct pclink_server *srv)
{
	for (unsigned int i = 0; i < REGION_MAX; i++)
		if (srv->registered[i])
			return true;
	return false;
}

/*
 * Region @r (held exclusive) against entry @i of the ctl header, and its
 * needed map read once into a private copy (*out, malloc()ed): a peer
 * that writes the shared map meanwhile cannot make the service see two
 * versions of it.  -EINVAL when the layouts differ.
 */
static int pclink_needed_copy(struct pclink_server *srv, struct region *r, unsigned int i,
			      uint64_t **out)
{
	const struct shm_ctl_header *hdr = srv->ctl->hdr;
	const struct shm_ctl_region *cr = &hdr->regions[i];
	uint64_t pages = r->size >> SHM_PAGE_SHIFT, words = SHM_BITMAP_WORDS(pages);
	const uint64_t *map = shm_ctl_dirty_bitmap(srv->ctl, i);
	uint64_t *copy;

	if (!map || cr->gpa != r->gpa || cr->size != r->size || cr->nr_pages != pages ||
	    r->size % SHM_PAGE_SIZE || !pages) {
		log_err("postcopy link: region %u: the control segment's layout differs from the "
			"VM's",
			i);
		return -EINVAL;
	}
	copy = malloc(words * sizeof(*copy));
	if (!copy)
		return -ENOMEM;
	for (uint64_t w = 0; w < words; w++)
		copy[w] = shm_bitmap_load_word(map, w);
	if (pages % SHM_BITS_PER_WORD)
		copy[words - 1] &= (1ull << (pages % SHM_BITS_PER_WORD)) - 1;
	*out = copy;
	return 0;
}

/* Registers region @i (the table held shared), if the VM and the ctl segment agree on it. */
static int pclink_register_one(struct pclink_server *srv, unsigned int i)
{
	struct region *r = region_table_get(srv->table, i);
	bool in_ctl = i < srv->ctl->hdr->nr_regions;
	uint64_t *needed = NULL;
	int ret;

	if (!r && !in_ctl)
		return 0;
	if (!r || !in_ctl) {
		log_err("postcopy link: region %u is only in the %s", i,
			r ? "VM" : "control segment");
		return -EINVAL;
	}
	region_lock_write(r);
	ret = pclink_needed_copy(srv, r, i, &needed);
	if (!ret)
		ret = fault_region_register_needed(srv->svc, r, needed);
	if (!ret) {
		srv->registered[i] = true;
		srv->pages[i] = r->size >> SHM_PAGE_SHIFT;
	}
	region_unlock_write(r);
	free(needed);
	return ret;
}

/*
 * LISTEN: starts the fault service and registers every region, or none
 * (the guest has not run: a partial registration is undone with force).
 * While the service runs a LISTEN is a restarted migrator's: 0, and
 * nothing changes (the private needed copies stay; the shared map has
 * lost the bits of the pages placed since).
 */
static int pclink_listen(struct pclink_server *srv)
{
	struct fault_service *fs;
	int ret;

	if (srv->svc)
		return 0;
	fs = srv->given;
	ret = fs ? 0 : fault_service_start(&fs, srv->table, NULL);
	if (ret)
		return ret;
	srv->svc = fs;
	region_table_lock_read(srv->table);
	for (unsigned int i = 0; i < REGION_MAX && !ret; i++)
		ret = pclink_register_one(srv, i);
	region_table_unlock_read(srv->table);
	if (ret) {
		pclink_unregister_all(srv, true);
		srv->svc = NULL;
		if (fs != srv->given)
			fault_service_stop(fs);
		return ret;
	}
	pthread_mutex_lock(&srv->lock);
	srv->fs = fs; /* published to the taker */
	pthread_mutex_unlock(&srv->lock);
	log_info("postcopy link: listening");
	return 0;
}

/*
 * END: unregisters (with force on @abort); without it a region still
 * missing pages stays registered and the reply is -EBUSY.  The service
 * stops with the last region.  Nothing registered: 0 (a repeated END).
 */
static int pclink_end(struct pclink_server *srv, bool abort)
{
	int ret;

	if (!srv->svc)
		return 0;
	ret = pclink_unregister_all(srv, abort);
	if (pclink_any_registered(srv))
		return ret ? ret : -EBUSY;
	pclink_fs_retire(srv);
	ret = srv->svc == srv->given ? 0 : fault_service_stop(srv->svc);
	srv->svc = NULL;
	log_info("postcopy link: ended%s", abort ? " (abort)" : "");
	return ret;
}

/* Whether @h (@len bytes received, not truncated) is a message the migrator may send here. */
static bool pclink_valid(const struct pclink_server *srv, const struct pclink_hdr *h, size_t len)
{
	bool plain = h->region == 0 && h->count == 0 && h->page == 0;
	uint64_t pages;

	if (len < sizeof(*h) || h->magic != PCLINK_MAGIC || h->err != 0)
		return false;
	switch (h->type) {
	case PCLINK_LISTEN:
	case PCLINK_AGAIN:
		return len == sizeof(*h) && plain && h->flags == 0;
	case PCLINK_END:
		return len == sizeof(*h) && plain && !(h->flags & ~PCLINK_ABORT);
	case PCLINK_PLACE:
		if ((h->flags & ~PCLINK_ZERO) || h->count < 1 || h->count > PCLINK_MAX_PAGES)
			return false;
		if (len != sizeof(*h) + (h->flags & PCLINK_ZERO ? 0 : h->count * SHM_PAGE_SIZE))
			return false;
		if (h->region >= REGION_MAX || !srv->registered[h->region])
			return false;
		pages = srv->pages[h->region];
		return h->page < pages && h->count <= pages - h->page;
	default: /* FAULTS, REPLY, ERROR go the other way */
		return false;
	}
}

/* Acts on one message, @len bytes (@trunc: more than the buffer held). */
static void pclink_handle(struct pclink_server *srv, const struct pclink_hdr *h, size_t len,
			  bool trunc)
{
	struct fault_service *fs;
	int ret;

	if (trunc || !pclink_valid(srv, h, len)) {
		if (atomic_fetch_add(&srv->refused, 1) < PCLINK_LOG_REFUSED)
			log_warn("postcopy link: refused a message: %zu%s bytes, type %u, "
				 "region %u, page %llu, count %u, flags %#x",
				 len, trunc ? "+" : "", h->type, h->region,
				 (unsigned long long)h->page, h->count, h->flags);
		pclink_reply(srv, PCLINK_ERROR, -EPROTO, h->region, h->page);
		return;
	}
	atomic_fetch_add(&srv->msgs, 1);
	switch (h->type) {
	case PCLINK_LISTEN:
		pclink_reply(srv, PCLINK_REPLY, pclink_listen(srv), 0, 0);
		break;
	case PCLINK_PLACE:
		ret = fault_place(srv->svc, h->region, h->page, h->count,
				  h->flags & PCLINK_ZERO ? NULL : srv->data);
		if (ret) {
			atomic_fetch_add(&srv->place_failed, 1);
			log_warn("postcopy link: region %u pages %llu+%u: %s", h->region,
				 (unsigned long long)h->page, h->count, strerror(-ret));
			pclink_reply(srv, PCLINK_ERROR, ret, h->region, h->page);
		}
		break;
	case PCLINK_AGAIN:
		atomic_store(&srv->again, true);
		/* Queued again here too: a taker waiting for new requests takes them now. */
		fs = pclink_fs_get(srv);
		if (fs) {
			fault_requests_again(fs);
			pclink_fs_put(srv);
		}
		break;
	case PCLINK_END:
		pclink_reply(srv, PCLINK_REPLY, pclink_end(srv, h->flags & PCLINK_ABORT), 0, 0);
		break;
	}
}

/* The link read EOF or an error: waits before reading again.  True when stopping. */
static bool pclink_backoff(struct pclink_server *srv, const char *why)
{
	if (!srv->backoff_ms) {
		log_warn("postcopy link: %s; waiting for a migrator (faults keep waiting)", why);
		srv->backoff_ms = 10;
	} else if (srv->backoff_ms < PCLINK_BACKOFF_MAX_MS) {
		srv->backoff_ms *= 2;
		if (srv->backoff_ms > PCLINK_BACKOFF_MAX_MS)
			srv->backoff_ms = PCLINK_BACKOFF_MAX_MS;
	}
	return pclink_pause(srv, (int)srv->backoff_ms);
}

static void *pclink_reader_main(void *arg)
{
	struct pclink_server *srv = arg;

	log_set_thread("pclink");
	while (!atomic_load(&srv->stopping)) {
		struct pollfd pfd[2] = {{.fd = srv->fd, .events = POLLIN | POLLRDHUP},
					{.fd = srv->stop_efd, .events = POLLIN}};
		struct pclink_hdr h;
		struct iovec iov[2] = {{.iov_base = &h, .iov_len = sizeof(h)},
				       {.iov_base = srv->data, .iov_len = PCLINK_DATA_MAX}};
		struct msghdr msg = {.msg_iov = iov, .msg_iovlen = 2};
		ssize_t n;

		if (poll(pfd, 2, -1) < 0) {
			if (errno != EINTR && pclink_backoff(srv, "poll failed"))
				break;
			continue;
		}
		if (pfd[1].revents)
			break;
		memset(&h, 0, sizeof(h)); /* a short message leaves the rest zero */
		n = recvmsg(srv->fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				continue;
			if (pclink_backoff(srv, strerror(errno)))
				break;
			continue;
		}
		/* 0: an empty message, or EOF once the peer shut its end (POLLRDHUP). */
		if (n == 0 && (pfd[0].revents & (POLLHUP | POLLRDHUP))) {
			if (pclink_backoff(srv, "peer closed its end"))
				break;
			continue;
		}
		if (srv->backoff_ms)
			log_info("postcopy link: reading again");
		srv->backoff_ms = 0;
		pclink_handle(srv, &h, (size_t)n, msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC));
	}
	return NULL;
}

/*
 * Requests -> FAULTS.  Entries taken but not sent yet are kept (pending)
 * and sent once there is room, so a slow migrator loses none; a gone one
 * is backed off from, and its successor's AGAIN drops them: the service
 * hands every outstanding request out again.
 */
static void *pclink_taker_main(void *arg)
{
	struct pclink_server *srv = arg;
	struct fault_page req[PCLINK_MAX_FAULTS];
	struct pclink_page out[PCLINK_MAX_FAULTS];
	unsigned int pending = 0;

	log_set_thread("pclink-take");
	while (!atomic_load(&srv->stopping)) {
		struct fault_service *fs;
		bool again;
		int n;

		if (pending && !atomic_load(&srv->again)) {
			struct pclink_hdr h = {
				.magic = PCLINK_MAGIC, .type = PCLINK_FAULTS, .count = pending};

			n = pclink_send(srv, &h, out, pending * sizeof(out[0]),
					PCLINK_SEND_SLICE_MS);
			if (!n) {
				atomic_fetch_add(&srv->faults_sent, pending);
				pending = 0;
			} else if (n != -ETIMEDOUT && n != -ECANCELED) {
				atomic_fetch_add(&srv->send_failed, 1);
				pclink_pause(srv, PCLINK_BACKOFF_MAX_MS);
			}
			continue;
		}
		fs = pclink_fs_get(srv);
		if (!fs) {
			pending = 0;
			pclink_pause(srv, PCLINK_TAKE_MS);
			continue;
		}
		again = atomic_exchange(&srv->again, false);
		if (again)
			pending = 0; /* queued again by the take */
		n = fault_take_requests(fs, req, PCLINK_MAX_FAULTS, PCLINK_TAKE_MS, again);
		pclink_fs_put(srv);
		if (n < 0) {
			if (n != -ECANCELED)
				log_warn("postcopy link: taking faults: %s", strerror(-n));
			pclink_pause(srv, PCLINK_TAKE_MS);
			continue;
		}
		for (int i = 0; i < n; i++)
			out[i] = (struct pclink_page){.region = req[i].region, .page = req[i].page};
		pending = (unsigned int)n;
	}
	return NULL;
}

static void pclink_free(struct pclink_server *srv)
{
	close(srv->stop_efd);
	pthread_cond_destroy(&srv->cond);
	pthread_mutex_destroy(&srv->lock);
	free(srv->data);
	free(srv);
}

int pclink_server_start(struct pclink_server **out, int fd, struct region_table *table,
			const struct shm_ctl *ctl, struct fault_service *fs)
{
	struct pclink_server *srv;
	int ret;

	if (fd < 0 || !table || !ctl || !ctl->hdr)
		return -EINVAL;
	srv = calloc(1, sizeof(*srv));
	if (!srv)
		return -ENOMEM;
	srv->fd = fd;
	srv->table = table;
	srv->ctl = ctl;
	srv->given = fs;
	srv->data = aligned_alloc(SHM_PAGE_SIZE, PCLINK_DATA_MAX);
	srv->stop_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (!srv->data || srv->stop_efd < 0) {
		ret = srv->data ? -errno : -ENOMEM;
		if (srv->stop_efd >= 0)
			close(srv->stop_efd);
		free(srv->data);
		free(srv);
		return ret;
	}
	pthread_mutex_init(&srv->lock, NULL);
	pthread_cond_init(&srv->cond, NULL);
	ret = -pthread_create(&srv->reader, NULL, pclink_reader_main, srv);
	if (ret) {
		pclink_free(srv);
		return ret;
	}
	ret = -pthread_create(&srv->taker, NULL, pclink_taker_main, srv);
	if (ret) {
		uint64_t one = 1;

		atomic_store(&srv->stopping, true);
		if (write(srv->stop_efd, &one, sizeof(one)) != sizeof(one))
			abort(); /* an eventfd write of 1 cannot fail */
		pthread_join(srv->reader, NULL);
		/* The reader may have taken a LISTEN already: the guest has not run. */
		if (srv->svc) {
			pclink_unregister_all(srv, true);
			pclink_fs_retire(srv);
			if (srv->svc != srv->given)
				fault_service_stop(srv->svc);
		}
		pclink_free(srv);
		return ret;
	}
	srv->running = true;
	*out = srv;
	return 0;
}

int pclink_server_stop(struct pclink_server *srv, bool vm_gone)
{
	uint64_t one = 1;
	int ret;

	if (!srv)
		return 0;
	if (srv->running) {
		atomic_store(&srv->stopping, true);
		if (write(srv->stop_efd, &one, sizeof(one)) != sizeof(one))
			log_warn("postcopy link: waking its threads: %s", strerror(errno));
		pthread_join(srv->reader, NULL);
		pthread_join(srv->taker, NULL);
		srv->running = false;
	}
	if (srv->svc) {
		ret = pclink_unregister_all(srv, vm_gone);
		if (pclink_any_registered(srv)) {
			log_warn("postcopy link: stopped with pages still missing: the fault "
				 "service "
				 "stays, and so do their waiters");
			return ret ? ret : -EBUSY;
		}
		pclink_fs_retire(srv);
		if (srv->svc != srv->given)
			fault_service_stop(srv->svc);
		srv->svc = NULL;
	}
	pclink_free(srv);
	return 0;
}

void pclink_server_stats(struct pclink_server *srv, struct pclink_stats *st)
{
	struct fault_service *fs = pclink_fs_get(srv);

	memset(st, 0, sizeof(*st));
	st->msgs = atomic_load(&srv->msgs);
	st->refused = atomic_load(&srv->refused);
	st->place_failed = atomic_load(&srv->place_failed);
	st->faults_sent = atomic_load(&srv->faults_sent);
	st->send_failed = atomic_load(&srv->send_failed);
	if (!fs)
		return;
	st->listening = true;
	fault_service_stats(fs, &st->fs);
	pclink_fs_put(srv);
}
