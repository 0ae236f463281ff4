// SPDX-License-Identifier: GPL-2.0-only
/* Where the child binaries are: installed next to cleave, or in the build tree. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "launcher/run-internal.h"
#include "log/log.h"

static int libexec_try(const char *dir, const char *sub, const char *name, char *buf, size_t len)
{
	int n;

	n = snprintf(buf, len, "%s%s%s/%s", dir, sub ? "/" : "", sub ? sub : "", name);
	if (n < 0 || (size_t)n >= len)
		return -ENAMETOOLONG;
	return access(buf, X_OK) ? -errno : 0;
}

int run_libexec_find(const char *name, const char *build_subdir, char *buf, size_t len)
{
	const char *env = getenv("CLEAVE_LIBEXEC_DIR");
	char self[PATH_MAX], *slash;
	ssize_t n;
	int ret;

	if (env && *env) {
		ret = libexec_try(env, NULL, name, buf, len);
		if (ret)
			log_err("%s not found in CLEAVE_LIBEXEC_DIR=%s: %s", name, env,
				strerror(-ret));
		return ret;
	}
	n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n < 0) {
		ret = -errno;
		log_err("readlink /proc/self/exe: %s", strerror(-ret));
		return ret;
	}
	self[n] = '\0';
	slash = strrchr(self, '/');
	if (!slash)
		return -ENOENT;
	*slash = '\0';
	if (!libexec_try(self, NULL, name, buf, len))
		return 0;
	if (build_subdir && !libexec_try(self, build_subdir, name, buf, len))
		return 0;
	log_err("%s not found in %s%s%s%s%s (build it, or set CLEAVE_LIBEXEC_DIR)", name, self,
		build_subdir ? " nor in " : "", build_subdir ? self : "", build_subdir ? "/" : "",
		build_subdir ? build_subdir : "");
	return -ENOENT;
}
