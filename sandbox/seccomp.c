// SPDX-License-Identifier: GPL-2.0-only
/*
 * Compiles a policy table into a seccomp filter with libseccomp and loads it
 * for every thread.  A refused syscall raises SIGSYS (SCMP_ACT_TRAP): the
 * handler names the call on stderr, then dies of SIGSYS.  KILL_PROCESS would
 * be simpler but silent, and an operator needs to know what was refused.
 */
#include <errno.h>
#include <seccomp.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#include "log/log.h"
#include "sandbox/policy-internal.h"

/* Above every x86_64 syscall number (~460); others are reported as "?". */
#define SB_NR_NAMES 512

/*
 * Written once before the filter is loaded, read by the SIGSYS handler only:
 * the handler can neither allocate nor ask libseccomp.
 */
static const char *sb_names[SB_NR_NAMES];
static char sb_proc[48];

bool sandbox_sanitizer_build(void)
{
#ifdef CLEAVE_SANITIZE
	return true;
#else
	return false;
#endif
}

static size_t sb_append(char *buf, size_t off, size_t len, const char *s)
{
	while (*s && off + 1 < len)
		buf[off++] = *s++;
	return off;
}

static size_t sb_append_uint(char *buf, size_t off, size_t len, unsigned long v)
{
	char tmp[24];
	size_t n = 0;

	do
		tmp[n++] = (char)('0' + v % 10);
	while ((v /= 10) && n < sizeof(tmp));
	while (n && off + 1 < len)
		buf[off++] = tmp[--n];
	return off;
}

/*
 * SA_RESETHAND already made SIGSYS SIG_DFL.  Issuing the refused call again
 * traps again, and a seccomp SIGSYS is forced: with the default action it
 * kills the whole process, even an init of a PID namespace (which ignores
 * a raise() of its own).
 */
static void sb_sigsys(int sig, siginfo_t *si, void *uc_arg)
{
	ucontext_t *uc = uc_arg;
	char msg[160];
	size_t off = 0;
	int nr = si->si_syscall;

	(void)sig;
	off = sb_append(msg, off, sizeof(msg), sb_proc);
	off = sb_append(msg, off, sizeof(msg), ": seccomp: refused syscall ");
	off = sb_append_uint(msg, off, sizeof(msg), (unsigned long)nr);
	off = sb_append(msg, off, sizeof(msg), " (");
	off = sb_append(msg, off, sizeof(msg),
			nr >= 0 && nr < SB_NR_NAMES && sb_names[nr] ? sb_names[nr] : "?");
	off = sb_append(msg, off, sizeof(msg), ")\n");
	if (write(STDERR_FILENO, msg, off) < 0)
		(void)0; /* nowhere else to say it */
#ifdef __x86_64__
	syscall(nr, uc->uc_mcontext.gregs[REG_RDI], uc->uc_mcontext.gregs[REG_RSI],
		uc->uc_mcontext.gregs[REG_RDX], uc->uc_mcontext.gregs[REG_R10],
		uc->uc_mcontext.gregs[REG_R8], uc->uc_mcontext.gregs[REG_R9]);
#else
	(void)uc;
	syscall(nr);
#endif
	/* Not reached unless the call was allowed this time: never continue. */
	_exit(128 + SIGSYS);
}

static void sb_names_fill(void)
{
	int nr;

	if (sb_names[0])
		return;
	for (nr = 0; nr < SB_NR_NAMES; nr++)
		sb_names[nr] = seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, nr);
}

static uint32_t sb_action(enum sandbox_action a)
{
	switch (a) {
	case SANDBOX_ENOSYS:
		return SCMP_ACT_ERRNO(ENOSYS);
	case SANDBOX_EPERM:
		return SCMP_ACT_ERRNO(EPERM);
	case SANDBOX_ALLOW:
	default:
		return SCMP_ACT_ALLOW;
	}
}

static int sb_rule_add(scmp_filter_ctx ctx, const struct sandbox_table *t,
		       const struct sandbox_rule *r)
{
	struct scmp_arg_cmp cmp[SANDBOX_MAX_ARGS];
	unsigned int i;
	int nr, ret;

	nr = seccomp_syscall_resolve_name(r->syscall);
	if (nr == __NR_SCMP_ERROR) {
		log_err("seccomp policy %s: unknown syscall '%s'", t->name, r->syscall);
		return -EINVAL;
	}
	if (r->nr_args > SANDBOX_MAX_ARGS)
		return -EINVAL;
	for (i = 0; i < r->nr_args; i++) {
		const struct sandbox_arg *a = &r->args[i];

		cmp[i].arg = a->index;
		cmp[i].datum_a = a->op == SANDBOX_MASKED_EQ ? a->mask : a->value;
		cmp[i].datum_b = a->op == SANDBOX_MASKED_EQ ? a->value : 0;
		if (a->value == SANDBOX_SELF_PID)
			cmp[i].datum_a = (uint64_t)getpid();
		cmp[i].op = a->op == SANDBOX_MASKED_EQ ? SCMP_CMP_MASKED_EQ
			    : a->op == SANDBOX_NE      ? SCMP_CMP_NE
						       : SCMP_CMP_EQ;
	}
	ret = seccomp_rule_add_array(ctx, sb_action(r->action), nr, r->nr_args, cmp);
	/* The same rule in two tables of one policy is fine. */
	if (ret && ret != -EEXIST) {
		log_err("seccomp policy %s: rule for %s: %s", t->name, r->syscall, strerror(-ret));
		return ret;
	}
	return 0;
}

static int sb_table_add(scmp_filter_ctx ctx, const struct sandbox_table *t)
{
	size_t i;
	int ret;

	for (i = 0; i < t->nr_rules; i++) {
		ret = sb_rule_add(ctx, t, &t->rules[i]);
		if (ret)
			return ret;
	}
	return 0;
}

int sandbox_seccomp_install(const struct sandbox_policy *p, unsigned int flags)
{
	bool log_only =
		(flags & SANDBOX_F_LOG) || (sandbox_sanitizer_build() && !(flags & SANDBOX_F_TRAP));
	struct sigaction sa = {0};
	scmp_filter_ctx ctx;
	unsigned int i;
	int ret;

	ctx = seccomp_init(log_only ? SCMP_ACT_LOG : SCMP_ACT_TRAP);
	if (!ctx)
		return -ENOMEM;
	/* All threads (NNG's are running already); a foreign-arch call kills. */
	ret = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_TSYNC, 1);
	if (!ret)
		ret = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS);
	if (!ret)
		ret = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 1);
	if (ret) {
		log_err("seccomp attributes: %s", strerror(-ret));
		goto err_ctx;
	}
	for (i = 0; i < SANDBOX_MAX_TABLES && p->tables[i]; i++) {
		ret = sb_table_add(ctx, p->tables[i]);
		if (ret)
			goto err_ctx;
	}
	/* Tests ask for the production policy exactly (SANDBOX_F_TRAP): no extras. */
	if (sandbox_sanitizer_build() && !(flags & SANDBOX_F_TRAP)) {
		ret = sb_table_add(ctx, &sandbox_table_sanitizer);
		if (ret)
			goto err_ctx;
	}

	sb_names_fill();
	strncpy(sb_proc, p->name, sizeof(sb_proc) - 1);
	sa.sa_sigaction = sb_sigsys;
	sa.sa_flags = SA_SIGINFO | SA_RESETHAND | SA_NODEFER;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGSYS, &sa, NULL)) {
		ret = -errno;
		goto err_ctx;
	}
	ret = seccomp_load(ctx);
	if (ret) {
		log_err("seccomp_load (%s): %s", p->name, strerror(-ret));
		goto err_ctx;
	}
	seccomp_release(ctx);
	return 0;

err_ctx:
	seccomp_release(ctx);
	return ret;
}
