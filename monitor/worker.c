// SPDX-License-Identifier: GPL-2.0-only
/* Backend worker threads and the completion queue: see worker.h. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "log/log.h"
#include "monitor/fd-link.h"
#include "monitor/worker.h"

struct mon_job *mon_job_alloc(void)
{
	struct mon_job *job = calloc(1, sizeof(*job));

	if (job) {
		job->client_fd = -1;
		job->fd = -1;
	}
	return job;
}

void mon_job_free(struct mon_job *job)
{
	if (!job)
		return;
	free(job->id);
	if (job->fd >= 0)
		close(job->fd);
	free(job->fd_name);
	json_decref(job->args);
	mon_result_fini(&job->res);
	free(job);
}

static void mon_job_list_free(struct mon_job *job)
{
	while (job) {
		struct mon_job *next = job->next;

		mon_job_free(job);
		job = next;
	}
}

int mon_done_init(struct mon_done *d)
{
	memset(d, 0, sizeof(*d));
	d->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (d->efd < 0)
		return -errno;
	pthread_mutex_init(&d->lock, NULL);
	d->tail = &d->head;
	return 0;
}

void mon_done_fini(struct mon_done *d)
{
	if (!d->tail)
		return;
	mon_job_list_free(d->head);
	close(d->efd);
	pthread_mutex_destroy(&d->lock);
	memset(d, 0, sizeof(*d));
	d->efd = -1;
}

static void mon_done_push(struct mon_done *d, struct mon_job *job)
{
	uint64_t one = 1;

	job->next = NULL;
	pthread_mutex_lock(&d->lock);
	*d->tail = job;
	d->tail = &job->next;
	pthread_mutex_unlock(&d->lock);
	/* Only fails when the counter would overflow: the loop wakes anyway. */
	if (write(d->efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		log_warn("completion eventfd write: %s", strerror(errno));
}

struct mon_job *mon_done_take(struct mon_done *d)
{
	struct mon_job *head;
	uint64_t n;

	/* Read the counter first: a push racing with us re-arms it. */
	if (read(d->efd, &n, sizeof(n)) < 0 && errno != EAGAIN)
		log_warn("completion eventfd read: %s", strerror(errno));
	pthread_mutex_lock(&d->lock);
	head = d->head;
	d->head = NULL;
	d->tail = &d->head;
	pthread_mutex_unlock(&d->lock);
	return head;
}

/* Pops the next job, or NULL once stopping. */
static struct mon_job *mon_worker_pop(struct mon_worker *w)
{
	struct mon_job *job = NULL;

	pthread_mutex_lock(&w->lock);
	while (!w->stopping && !w->head)
		pthread_cond_wait(&w->cond, &w->lock);
	if (!w->stopping) {
		job = w->head;
		w->head = job->next;
		if (w->front == &job->next)
			w->front = &w->head;
		if (!w->head)
			w->tail = &w->head;
	}
	pthread_mutex_unlock(&w->lock);
	return job;
}

/* The backend is dead: everything queued gets the same answer now. */
static void mon_worker_fail_queued(struct mon_worker *w, const struct mon_result *why)
{
	struct mon_job *list, *next;

	pthread_mutex_lock(&w->lock);
	list = w->head;
	w->head = NULL;
	w->tail = &w->head;
	w->front = &w->head;
	pthread_mutex_unlock(&w->lock);
	for (; list; list = next) {
		next = list->next;
		mon_result_error(&list->res, why->err_class, "%s", why->err_desc);
		list->res.backend_down = true;
		mon_done_push(w->done, list);
	}
}

/*
 * An "fd:NAME" job: the fd goes to the migrator first, and the MIGRATE /
 * INCOMING that names it follows only once the migrator answered that it
 * holds it (so the call never overtakes the fd).  True when .run goes on.
 */
static bool mon_job_hand_fd(struct mon_ctx *ctx, struct mon_job *job)
{
	int fd = job->fd, ret;

	if (fd < 0)
		return true;
	job->fd = -1;
	ret = mon_fdlink_send(ctx, job->fd_name, fd);
	if (!ret)
		return true;
	if (ret == -ENOTSOCK)
		mon_result_error(&job->res, NULL,
				 "fd:%s: the file descriptor is not a socket (a migration needs a "
				 "connected stream socket)",
				 job->fd_name);
	else if (ret == -ETIMEDOUT || ret == -ENOTCONN)
		mon_result_error(&job->res, NULL,
				 "fd:%s: the migrator did not take the file descriptor: %s",
				 job->fd_name, ret == -ETIMEDOUT ? "no answer" : "no fd link");
	else
		mon_result_error(&job->res, NULL,
				 "fd:%s: the migrator refused the file descriptor: %s",
				 job->fd_name, strerror(-ret));
	return false;
}

static void *mon_worker_main(void *arg)
{
	struct mon_worker *w = arg;
	struct mon_job *job;

	log_set_thread(w->name);
	while ((job = mon_worker_pop(w))) {
		if (mon_job_hand_fd(w->ctx, job))
			job->run(w->ctx, job->args, &job->res);
		if (!job->res.err_class && !job->res.ret)
			job->res.ret = json_object();
		if (job->res.err_class)
			log_debug("%s: %s", job->name, job->res.err_desc);
		if (job->res.backend_down) {
			struct mon_result why = job->res;

			why.ret = NULL;
			mon_done_push(w->done, job);
			mon_worker_fail_queued(w, &why);
		} else {
			mon_done_push(w->done, job);
		}
	}
	return NULL;
}

int mon_worker_start(struct mon_worker *w, const char *name, unsigned int threads,
		     struct mon_ctx *ctx, struct mon_done *done)
{
	int ret = 0;

	if (threads < 1 || threads > MON_WORKER_MAX_THREADS)
		return -EINVAL;
	memset(w, 0, sizeof(*w));
	w->name = name;
	w->ctx = ctx;
	w->done = done;
	w->tail = &w->head;
	w->front = &w->head;
	pthread_mutex_init(&w->lock, NULL);
	pthread_cond_init(&w->cond, NULL);
	w->state = MON_WORKER_RUNNING;
	while (w->nr_threads < threads) {
		ret = pthread_create(&w->threads[w->nr_threads], NULL, mon_worker_main, w);
		if (ret)
			break;
		w->nr_threads++;
	}
	if (ret) {
		mon_worker_stop(w); /* joins the ones that started */
		return -ret;
	}
	return 0;
}

void mon_worker_stop(struct mon_worker *w)
{
	if (w->state != MON_WORKER_RUNNING)
		return;
	pthread_mutex_lock(&w->lock);
	w->stopping = true;
	pthread_cond_broadcast(&w->cond);
	pthread_mutex_unlock(&w->lock);
	while (w->nr_threads)
		pthread_join(w->threads[--w->nr_threads], NULL);
	mon_job_list_free(w->head);
	w->head = NULL;
	w->tail = w->front = &w->head;
	pthread_cond_destroy(&w->cond);
	pthread_mutex_destroy(&w->lock);
	w->state = MON_WORKER_IDLE;
}

void mon_worker_submit(struct mon_worker *w, struct mon_job *job)
{
	job->next = NULL;
	pthread_mutex_lock(&w->lock);
	*w->tail = job;
	w->tail = &job->next;
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->lock);
}

void mon_worker_submit_front(struct mon_worker *w, struct mon_job *job)
{
	pthread_mutex_lock(&w->lock);
	job->next = *w->front;
	*w->front = job;
	if (w->tail == w->front)
		w->tail = &job->next;
	w->front = &job->next;
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->lock);
}
