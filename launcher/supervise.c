// SPDX-License-Identifier: GPL-2.0-only
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "launcher/supervise.h"
#include "log/log.h"

/* Signals this close to the first one are the same request. */
#define SUP_SIGNAL_REPEAT_MS 1000

const struct sup_policy sup_policy_default = {
	.backoff_min_ms = 50,
	.backoff_max_ms = 1000,
	.restart_limit = 10,
	.restart_window_ms = 60000,
	.stable_ms = 10000,
	.grace_ms = 3000,
};

static int64_t sup_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static const char *sup_signame(int sig)
{
	const char *abbrev = sigabbrev_np(sig);

	return abbrev ? abbrev : "?";
}

void sup_status_describe(int code, int status, char *buf, size_t len)
{
	switch (code) {
	case CLD_EXITED:
		snprintf(buf, len, "exited with status %d", status);
		break;
	case CLD_KILLED:
		snprintf(buf, len, "killed by SIG%s", sup_signame(status));
		break;
	case CLD_DUMPED:
		snprintf(buf, len, "dumped core on SIG%s", sup_signame(status));
		break;
	default:
		snprintf(buf, len, "ended (code %d, status %d)", code, status);
		break;
	}
}

int sup_vm_exit_status(int code, int status, char *reason, size_t len)
{
	char what[64];

	if (code == CLD_EXITED && status == 0) {
		snprintf(reason, len, "VM stopped (guest powered off with code 0, or QMP quit)");
		return 0;
	}
	if (code == CLD_EXITED && status >= 1 && status <= 125) {
		snprintf(reason, len, "guest powered off with exit code %d", status);
		return status;
	}
	if (code == CLD_EXITED && status == 126) {
		snprintf(reason, len,
			 "cleave-vcpu failed (exit status 126: VMM error, see its log)");
		return 1;
	}
	if (code == CLD_EXITED) {
		snprintf(reason, len, "cleave-vcpu exited with unexpected status %d", status);
		return 1;
	}
	sup_status_describe(code, status, what, sizeof(what));
	snprintf(reason, len, "cleave-vcpu %s", what);
	return 1;
}

long sup_restart_delay(struct sup_child *c, const struct sup_policy *p, int64_t now_ms)
{
	int64_t keep[SUP_RESTART_LIMIT_MAX];
	unsigned int i, n = 0, limit;

	limit = p->restart_limit < SUP_RESTART_LIMIT_MAX ? p->restart_limit : SUP_RESTART_LIMIT_MAX;
	for (i = 0; i < c->nr_restarts; i++)
		if (now_ms - c->restart_ms[i] < (int64_t)p->restart_window_ms)
			keep[n++] = c->restart_ms[i];
	memcpy(c->restart_ms, keep, n * sizeof(keep[0]));
	c->nr_restarts = n;
	if (n >= limit)
		return -1;

	if (c->backoff_ms == 0 || now_ms - c->started_ms >= (int64_t)p->stable_ms)
		c->backoff_ms = p->backoff_min_ms;
	else if (c->backoff_ms < p->backoff_max_ms / 2)
		c->backoff_ms *= 2;
	else
		c->backoff_ms = p->backoff_max_ms;
	c->restart_ms[c->nr_restarts++] = now_ms;
	return c->backoff_ms;
}

int sup_init(struct sup *s, const struct sup_policy *policy)
{
	sigset_t mask;
	unsigned int i;

	memset(s, 0, sizeof(*s));
	s->policy = *policy;
	s->sigfd = -1;
	for (i = 0; i < SUP_MAX_CHILDREN; i++)
		s->children[i].pidfd = -1;
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP); /* terminal gone; nohup's SIG_IGN still wins */
	sigaddset(&mask, SIGCHLD);
	if (sigprocmask(SIG_BLOCK, &mask, &s->old_mask))
		return -errno;
	s->sigfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
	if (s->sigfd < 0) {
		int ret = -errno;

		sigprocmask(SIG_SETMASK, &s->old_mask, NULL);
		log_err("signalfd: %s", strerror(-ret));
		return ret;
	}
	return 0;
}

static void sup_child_reap(struct sup_child *c, siginfo_t *si)
{
	memset(si, 0, sizeof(*si));
	/* Blocking: used only once the pidfd is readable or after SIGKILL. */
	while (waitid(P_PIDFD, (id_t)c->pidfd, si, WEXITED) && errno == EINTR)
		;
	close(c->pidfd);
	c->pidfd = -1;
}

void sup_fini(struct sup *s)
{
	struct sup_child *c;
	unsigned int i;
	siginfo_t si;

	for (i = 0; i < s->nr_children; i++) {
		c = &s->children[i];
		if (c->state != SUP_RUNNING)
			continue;
		pidfd_send_signal(c->pidfd, SIGKILL, NULL, 0);
		sup_child_reap(c, &si);
		c->state = SUP_DONE;
	}
	if (s->sigfd >= 0) {
		close(s->sigfd);
		s->sigfd = -1;
		sigprocmask(SIG_SETMASK, &s->old_mask, NULL);
	}
}

int sup_child_add(struct sup *s, const char *name, const struct spawn_cmd *cmd, bool ends_vm)
{
	struct sup_child *c;

	if (s->nr_children == SUP_MAX_CHILDREN)
		return -ENOSPC;
	c = &s->children[s->nr_children++];
	c->name = name;
	c->cmd = cmd;
	c->ends_vm = ends_vm;
	c->state = SUP_IDLE;
	c->pidfd = -1;
	return 0;
}

static int sup_child_start(struct sup_child *c)
{
	int ret;

	ret = spawn_cmd_start(c->cmd, &c->pid, &c->pidfd);
	if (ret) {
		log_err("starting %s (%s): %s", c->name, c->cmd->path, strerror(-ret));
		return ret;
	}
	c->state = SUP_RUNNING;
	c->started_ms = sup_now_ms();
	log_info("started %s pid %d", c->name, (int)c->pid);
	return 0;
}

int sup_start(struct sup *s)
{
	unsigned int i;
	int ret;

	for (i = 0; i < s->nr_children; i++) {
		ret = sup_child_start(&s->children[i]);
		if (ret)
			return ret;
	}
	return 0;
}

/* Begins the shutdown: no more restarts, SIGTERM now, SIGKILL after grace. */
static void sup_stop(struct sup *s, int exit_status)
{
	struct sup_child *c;
	unsigned int i;

	if (s->stopping)
		return;
	s->stopping = true;
	s->stop_ms = sup_now_ms();
	s->exit_status = exit_status;
	s->kill_at_ms = sup_now_ms() + s->policy.grace_ms;
	for (i = 0; i < s->nr_children; i++) {
		c = &s->children[i];
		if (c->state == SUP_RUNNING)
			pidfd_send_signal(c->pidfd, SIGTERM, NULL, 0);
		else
			c->state = SUP_DONE;
	}
}

void sup_child_on_give_up(struct sup *s, unsigned int index, void (*fn)(void *), void *arg)
{
	if (index >= s->nr_children)
		return;
	s->children[index].gave_up = fn;
	s->children[index].gave_up_arg = arg;
}

static void sup_kill_all(struct sup *s)
{
	unsigned int i;

	for (i = 0; i < s->nr_children; i++) {
		if (s->children[i].state != SUP_RUNNING)
			continue;
		log_warn("%s (pid %d) still running; sending SIGKILL", s->children[i].name,
			 (int)s->children[i].pid);
		pidfd_send_signal(s->children[i].pidfd, SIGKILL, NULL, 0);
	}
	s->kill_at_ms = INT64_MAX;
}

/* Restart bookkeeping for a restartable child that is gone; @who names it. */
static void sup_child_lost(struct sup *s, struct sup_child *c, const char *who, const char *what)
{
	int64_t now = sup_now_ms();
	long delay;

	delay = sup_restart_delay(c, &s->policy, now);
	if (delay < 0) {
		c->state = SUP_GAVE_UP;
		log_err("%s %s: restart limit reached (%u restarts within %u s); not restarting "
			"it, the VM keeps running without %s",
			who, what, s->policy.restart_limit, s->policy.restart_window_ms / 1000,
			c->name);
		if (c->gave_up)
			c->gave_up(c->gave_up_arg);
		return;
	}
	c->state = SUP_BACKOFF;
	c->restart_at_ms = now + delay;
	log_warn("%s %s; restarting in %ld ms (restart %u of %u within %u s)", who, what, delay,
		 c->nr_restarts, s->policy.restart_limit, s->policy.restart_window_ms / 1000);
}

static void sup_child_died(struct sup *s, struct sup_child *c, const siginfo_t *si)
{
	char who[64], what[64], reason[128];
	int status;

	snprintf(who, sizeof(who), "%s (pid %d)", c->name, (int)c->pid);
	sup_status_describe(si->si_code, si->si_status, what, sizeof(what));
	c->state = SUP_DONE;
	if (s->stopping) {
		log_debug("%s %s", who, what);
		return;
	}
	if (!c->ends_vm) {
		sup_child_lost(s, c, who, what);
		return;
	}
	status = sup_vm_exit_status(si->si_code, si->si_status, reason, sizeof(reason));
	/* A guest's own exit code is a result, not a failure. */
	if (si->si_code != CLD_EXITED || si->si_status > 125)
		log_err("%s %s: %s", who, what, reason);
	else
		log_info("%s %s: %s", who, what, reason);
	sup_stop(s, status);
}

static void sup_signals_read(struct sup *s)
{
	struct signalfd_siginfo ssi;

	while (read(s->sigfd, &ssi, sizeof(ssi)) == sizeof(ssi)) {
		/* SIGCHLD only wakes us; the pidfds say which child. */
		if (ssi.ssi_signo == SIGCHLD)
			continue;
		/*
		 * A second signal means "now", unless it is the same request
		 * delivered twice (a wrapper like timeout(1) signals us and our
		 * process group).
		 */
		if (s->stopping && sup_now_ms() - s->stop_ms < SUP_SIGNAL_REPEAT_MS)
			continue;
		if (s->stopping) {
			log_warn("SIG%s again: killing the children now",
				 sup_signame((int)ssi.ssi_signo));
			sup_kill_all(s);
			continue;
		}
		log_info("SIG%s: shutting down", sup_signame((int)ssi.ssi_signo));
		sup_stop(s, 0);
	}
}

/* Poll timeout in ms until the next restart or the SIGKILL deadline. */
static int sup_timeout(const struct sup *s, int64_t now)
{
	int64_t next = INT64_MAX;
	unsigned int i;

	for (i = 0; i < s->nr_children; i++)
		if (s->children[i].state == SUP_BACKOFF && s->children[i].restart_at_ms < next)
			next = s->children[i].restart_at_ms;
	if (s->stopping && s->kill_at_ms < next)
		next = s->kill_at_ms;
	if (next == INT64_MAX)
		return -1;
	return next <= now ? 0 : (int)(next - now > 60000 ? 60000 : next - now);
}

static void sup_timers_run(struct sup *s, int64_t now)
{
	struct sup_child *c;
	unsigned int i;

	if (s->stopping && now >= s->kill_at_ms)
		sup_kill_all(s);
	for (i = 0; i < s->nr_children; i++) {
		c = &s->children[i];
		if (c->state != SUP_BACKOFF || now < c->restart_at_ms)
			continue;
		/* A failed start counts as a death: backoff and the limit apply. */
		if (sup_child_start(c)) {
			c->started_ms = now;
			sup_child_lost(s, c, c->name, "could not be started");
		}
	}
}

static bool sup_any_running(const struct sup *s)
{
	unsigned int i;

	for (i = 0; i < s->nr_children; i++)
		if (s->children[i].state == SUP_RUNNING)
			return true;
	return false;
}

int sup_run(struct sup *s)
{
	struct pollfd pfd[SUP_MAX_CHILDREN + 1];
	struct sup_child *owner[SUP_MAX_CHILDREN + 1];
	unsigned int i, n;
	siginfo_t si;
	int ret;

	while (!s->stopping || sup_any_running(s)) {
		n = 0;
		pfd[n++] = (struct pollfd){.fd = s->sigfd, .events = POLLIN};
		for (i = 0; i < s->nr_children; i++) {
			if (s->children[i].state != SUP_RUNNING)
				continue;
			owner[n] = &s->children[i];
			pfd[n++] = (struct pollfd){.fd = s->children[i].pidfd, .events = POLLIN};
		}
		ret = poll(pfd, n, sup_timeout(s, sup_now_ms()));
		if (ret < 0 && errno != EINTR) {
			log_err("poll: %s", strerror(errno));
			sup_stop(s, 1);
			sup_kill_all(s);
			return 1;
		}
		/*
		 * Signals first, whatever poll reported: a Ctrl-C reaches the
		 * children too (same process group, queued to all at once), and
		 * their deaths must read as part of the shutdown, not as crashes.
		 */
		sup_signals_read(s);
		for (i = 1; ret > 0 && i < n; i++) {
			if (!pfd[i].revents)
				continue;
			sup_child_reap(owner[i], &si);
			sup_child_died(s, owner[i], &si);
		}
		sup_timers_run(s, sup_now_ms());
	}
	return s->exit_status;
}
