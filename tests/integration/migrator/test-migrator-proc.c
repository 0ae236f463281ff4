// SPDX-License-Identifier: GPL-2.0-only
/*
 * The real cleave-migrator process, without KVM (its VM peer is only an RPC
 * address it dials): it maps the memory the launcher would give it, and
 * its seccomp filter is in place before anything untrusted can reach it —
 * when its incoming port first accepts a connection, /proc shows
 * Seccomp: 2.  Garbage on that port and RPC queries are then served under
 * the filter, without a refused syscall, and SIGTERM ends it cleanly.
 * A save to a file (migrate "file:") through the snapshot directory's fd,
 * beside a stand-in vcpu-proc, under the filter too.
 *
 * Usage: test-migrator-proc CLEAVE_MIGRATOR
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "proto/fd-link.h"
#include "proto/migrator.pb-c.h"
#include "proto/rpc.h"
#include "proto/vcpu.pb-c.h"
#include "shm/shm.h"
#include "shm/snapfile.h"
#include "vcpu-proc/postcopy-link.h"
#include "vcpu-proc/region.h"
#include "tests/integration/migrator/proc-nodes.h"
#include "tests/util/test-util.h"

/*
 * NNG frees a stopped server's listener and pipes from its own reaper
 * thread, which process exit can overtake: LeakSanitizer then finds them
 * (indirect leaks inside libnng only, more often the more servers a run
 * stopped).  cleave-vcpu suppresses NNG's own leaks the same way.
 */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void)
{
	return "leak:libnng.so\n";
}

static int try_connect(unsigned int port)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0)
		return fd;
	if (fd >= 0)
		close(fd);
	return -1;
}

/* The value of "@key" in /proc/@pid/status, or "" */
static void proc_status(pid_t pid, const char *key, char *val, size_t len)
{
	char path[64], *text, *s;
	size_t n = 0;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	text = test_file_read(path);
	val[0] = '\0';
	s = strstr(text, key);
	if (s) {
		s += strlen(key);
		s += strspn(s, " \t");
		while (s[n] && s[n] != '\n' && n + 1 < len) {
			val[n] = s[n];
			n++;
		}
		val[n] = '\0';
	}
	free(text);
}

static void test_filtered_before_untrusted_input(void **state)
{
	const struct shm_ctl_layout layout = {.nr_regions = 1, .size = {4u << 20}};
	char dir[] = "/tmp/cleave-migproc-XXXXXX", log[128], rpc[160], ev[160], vcpu[160];
	char ctl_arg[16], ram_arg[16], uri[64], seccomp[16], nnp[16], err[256], *text;
	struct rpc_client *client = NULL;
	ProtobufCMessage *info = NULL;
	struct shm_region ram;
	struct shm_ctl ctl;
	unsigned int port = free_port();
	int64_t t0;
	int fd = -1, logfd, status;
	pid_t pid;

	(void)state;
	assert_non_null(mkdtemp(dir));
	assert_int_equal(shm_ctl_create(&ctl, &layout), 0);
	assert_int_equal(shm_region_create(&ram, 0, layout.size[0]), 0);
	snprintf(log, sizeof(log), "%s/migrator.log", dir);
	snprintf(rpc, sizeof(rpc), "ipc://%s/migrator.rpc", dir);
	snprintf(ev, sizeof(ev), "ipc://%s/migrator.events", dir);
	snprintf(vcpu, sizeof(vcpu), "ipc://%s/vcpu.rpc", dir); /* nobody there: only dialed */
	snprintf(ctl_arg, sizeof(ctl_arg), "%d", ctl.fd);
	snprintf(ram_arg, sizeof(ram_arg), "%d", ram.fd);
	snprintf(uri, sizeof(uri), "tcp:127.0.0.1:%u", port);
	logfd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	assert_true(logfd >= 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		fcntl(ctl.fd, F_SETFD, 0);
		fcntl(ram.fd, F_SETFD, 0);
		dup2(logfd, STDERR_FILENO);
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		execl(migrator_bin, migrator_bin, "--ctl-fd", ctl_arg, "--ram-fds", ram_arg,
		      "--vcpu-rpc", vcpu, "--rpc", rpc, "--events", ev, "--incoming", uri,
		      (char *)NULL);
		_exit(127);
	}
	close(logfd);
	/* The first moment anything from the network can reach it. */
	for (t0 = test_now_ms(); fd < 0 && test_now_ms() - t0 < 10000; test_sleep_ms(1))
		fd = try_connect(port);
	assert_true(fd >= 0);
	proc_status(pid, "Seccomp:", seccomp, sizeof(seccomp));
	proc_status(pid, "NoNewPrivs:", nnp, sizeof(nnp));
	assert_string_equal(seccomp, "2");
	assert_string_equal(nnp, "1");
	/* A stranger: dropped alone, under the filter. */
	assert_int_equal(write(fd, "GET / HTTP/1.1\r\n\r\n", 18), 18);
	close(fd);
	assert_int_equal(rpc_client_open(&client, rpc), 0);
	assert_int_equal(rpc_call(client, CLEAVE__MIGRATOR__METHOD__METHOD_QUERY, NULL,
				  &cleave__migrator__migration_info__descriptor, &info, 5000, err,
				  sizeof(err)),
			 0);
	rpc_msg_free(info);
	rpc_client_close(client);
	assert_int_equal(kill(pid, 0), 0);
	assert_int_equal(kill(pid, SIGTERM), 0);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	text = test_file_read(log);
	if (!WIFEXITED(status) || WEXITSTATUS(status) || strstr(text, "seccomp: refused"))
		fail_msg("cleave-migrator: status 0x%x, log:\n%s", status, text);
	assert_non_null(strstr(text, "refused: not a cleave migration stream"));
	free(text);
	shm_region_close(&ram);
	shm_ctl_close(&ctl);
	unlink(log);
	rmdir(dir);
}

/* A cleave-migrator of @ctl and @ram, as cleave run starts one with --migrate-tls-psk @psk. */
static pid_t spawn_psk(const struct shm_ctl *ctl, const struct shm_region *ram, const char *dir,
		       const char *psk)
{
	char log[128], rpc[160], ev[160], vcpu[160], ctl_arg[16], ram_arg[16];
	int logfd;
	pid_t pid;

	snprintf(log, sizeof(log), "%s/migrator.log", dir);
	snprintf(rpc, sizeof(rpc), "ipc://%s/migrator.rpc", dir);
	snprintf(ev, sizeof(ev), "ipc://%s/migrator.events", dir);
	snprintf(vcpu, sizeof(vcpu), "ipc://%s/vcpu.rpc", dir);
	snprintf(ctl_arg, sizeof(ctl_arg), "%d", ctl->fd);
	snprintf(ram_arg, sizeof(ram_arg), "%d", ram->fd);
	logfd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	assert_true(logfd >= 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		fcntl(ctl->fd, F_SETFD, 0);
		fcntl(ram->fd, F_SETFD, 0);
		dup2(logfd, STDERR_FILENO);
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		execl(migrator_bin, migrator_bin, "--ctl-fd", ctl_arg, "--ram-fds", ram_arg,
		      "--vcpu-rpc", vcpu, "--rpc", rpc, "--events", ev, "--tls-psk-file", psk,
		      (char *)NULL);
		_exit(127);
	}
	close(logfd);
	return pid;
}

static Cleave__Migrator__Parameters *query_params(const char *dir)
{
	ProtobufCMessage *p = NULL;
	char err[256];

	assert_int_equal(call(dir, CLEAVE__MIGRATOR__METHOD__METHOD_QUERY_PARAMETERS, NULL,
			      &cleave__migrator__parameters__descriptor, &p, err, sizeof(err)),
			 0);
	return (Cleave__Migrator__Parameters *)p;
}

/*
 * QMP's TLS parameters against the real process, under its filter: cleave
 * run's PSK file in use from the start (tls-creds "#cleave-run"); an
 * object of another directory refused (the jail cannot show it); an
 * object of the file's own directory set, with an authz-list; migrate-
 * incoming then refused for the client endpoint, as QEMU's check says; the
 * settings kept by a restarted migrator (SIGKILL, same control segment);
 * tls-creds "" gives back the secure default (no plaintext off the host).
 */
static void test_tls_params_process(void **state)
{
	const struct shm_ctl_layout layout = {.nr_regions = 1, .size = {4u << 20}};
	char dir[] = "/tmp/cleave-migtls-XXXXXX", psk[128], err[512], *text;
	Cleave__Migrator__Parameters set = CLEAVE__MIGRATOR__PARAMETERS__INIT, *q;
	Cleave__Migrator__TlsCreds creds = CLEAVE__MIGRATOR__TLS_CREDS__INIT;
	Cleave__Migrator__TlsAuthz authz = CLEAVE__MIGRATOR__TLS_AUTHZ__INIT;
	Cleave__Migrator__TlsAuthzRule rule = CLEAVE__MIGRATOR__TLS_AUTHZ_RULE__INIT, *rp = &rule;
	Cleave__Migrator__IncomingRequest in = CLEAVE__MIGRATOR__INCOMING_REQUEST__INIT;
	struct shm_region ram;
	struct shm_ctl ctl;
	FILE *f;
	int status;
	pid_t pid;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(psk, sizeof(psk), "%s/keys.psk", dir);
	f = fopen(psk, "w");
	assert_non_null(f);
	fprintf(f, "qemu:00112233445566778899aabbccddeeff\n");
	fclose(f);
	assert_int_equal(shm_ctl_create(&ctl, &layout), 0);
	assert_int_equal(shm_region_create(&ram, 0, layout.size[0]), 0);
	pid = spawn_psk(&ctl, &ram, dir, psk);
	q = query_params(dir);
	assert_string_equal(q->tls_creds, "#cleave-run");
	assert_string_equal(q->tls_authz, "");
	assert_non_null(q->tls_creds_object);
	assert_true(q->tls_creds_object->psk);
	assert_string_equal(q->tls_creds_object->path, psk);
	rpc_msg_free(&q->base);

	/* An object of a directory cleave run did not give. */
	set.has_tls_creds = true;
	set.tls_creds = "tls0";
	set.tls_creds_object = &creds;
	creds.psk = true;
	creds.dir = "/etc/pki/elsewhere";
	creds.client = true;
	assert_int_not_equal(call(dir, CLEAVE__MIGRATOR__METHOD__METHOD_SET_PARAMETERS, &set.base,
				  NULL, NULL, err, sizeof(err)),
			     0);
	assert_non_null(strstr(
		err,
		"TLS credentials file '/etc/pki/elsewhere/keys.psk' was not "
		"given to cleave run (--migrate-tls-psk or --migrate-tls-creds): the migrator's "
		"sandbox cannot read it"));
	/* The file's own directory, an authz-list and a hostname. */
	creds.dir = dir;
	set.has_tls_authz = set.has_tls_hostname = true;
	set.tls_authz = "auth0";
	set.tls_authz_object = &authz;
	set.tls_hostname = "dst.example";
	rule.match = "src*";
	rule.allow = rule.glob = true;
	authz.n_rules = 1;
	authz.rules = &rp;
	assert_int_equal(call(dir, CLEAVE__MIGRATOR__METHOD__METHOD_SET_PARAMETERS, &set.base, NULL,
			      NULL, err, sizeof(err)),
			 0);
	in.uri = "tcp:127.0.0.1:0";
	assert_int_not_equal(call(dir, CLEAVE__MIGRATOR__METHOD__METHOD_INCOMING, &in.base, NULL,
				  NULL, err, sizeof(err)),
			     0);
	assert_string_equal(err, "Expected TLS credentials for a server endpoint");

	/* A restarted migrator (same control segment): the same settings. */
	assert_int_equal(kill(pid, SIGKILL), 0);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	pid = spawn_psk(&ctl, &ram, dir, psk);
	q = query_params(dir);
	assert_string_equal(q->tls_creds, "tls0");
	assert_string_equal(q->tls_hostname, "dst.example");
	assert_string_equal(q->tls_authz, "auth0");
	assert_true(q->tls_creds_object && q->tls_creds_object->client &&
		    !q->tls_creds_object->server);
	assert_true(q->tls_authz_object && q->tls_authz_object->n_rules == 1);
	assert_string_equal(q->tls_authz_object->rules[0]->match, "src*");
	assert_true(q->tls_authz_object->rules[0]->glob);
	rpc_msg_free(&q->base);
	assert_int_not_equal(call(dir, CLEAVE__MIGRATOR__METHOD__METHOD_INCOMING, &in.base, NULL,
				  NULL, err, sizeof(err)),
			     0);
	assert_string_equal(err, "Expected TLS credentials for a server endpoint");

	/* Off: plaintext again, and only on loopback. */
	memset(&set, 0, sizeof(set));
	cleave__migrator__parameters__init(&set);
	set.has_tls_creds = true;
	set.tls_creds = "";
	assert_int_equal(call(dir, CLEAVE__MIGRATOR__METHOD__METHOD_SET_PARAMETERS, &set.base, NULL,
			      NULL, err, sizeof(err)),
			 0);
	in.uri = "tcp:0.0.0.0:0";
	assert_int_not_equal(call(dir, CLEAVE__MIGRATOR__METHOD__METHOD_INCOMING, &in.base, NULL,
				  NULL, err, sizeof(err)),
			     0);
	assert_non_null(strstr(err, "a non-loopback address needs TLS credentials"));
	/* cleave run's credentials again, by their id: both ends, so it listens. */
	set.tls_creds = "#cleave-run";
	assert_int_equal(call(dir, CLEAVE__MIGRATOR__METHOD__METHOD_SET_PARAMETERS, &set.base, NULL,
			      NULL, err, sizeof(err)),
			 0);
	q = query_params(dir);
	assert_string_equal(q->tls_creds, "#cleave-run");
	assert_true(q->tls_creds_object && q->tls_creds_object->server);
	assert_string_equal(q->tls_creds_object->path, psk);
	rpc_msg_free(&q->base);
	in.uri = "tcp:127.0.0.1:0";
	assert_int_equal(call(dir, CLEAVE__MIGRATOR__METHOD__METHOD_INCOMING, &in.base, NULL, NULL,
			      err, sizeof(err)),
			 0);

	assert_int_equal(kill(pid, SIGTERM), 0);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	snprintf(psk, sizeof(psk), "%s/migrator.log", dir);
	text = test_file_read(psk);
	if (!WIFEXITED(status) || WEXITSTATUS(status) || strstr(text, "seccomp: refused"))
		fail_msg("cleave-migrator: status 0x%x, log:\n%s", status, text);
	free(text);
	unlink(psk);
	snprintf(psk, sizeof(psk), "%s/keys.psk", dir);
	unlink(psk);
	shm_region_close(&ram);
	shm_ctl_close(&ctl);
	rmdir(dir);
}

/* ---- a save to a file, under the filter ---------------------------------------- */

/*
 * migrate "file:" and migrate-incoming "file:" in real processes, under
 * their filters, with stand-in vcpu-procs: the snapshot directory reached
 * only through the fd each opened before its filter
 * (SANDBOX_MIGRATOR_SNAPSHOT_DIRFD); a path outside it refused with why;
 * the file complete and equal to RAM; restored by another migrator
 * (cleave run --incoming file:) into a VM in inmigrate, RAM equal, the
 * state loaded, the guest resumed.
 */
static void test_save_and_restore(void **state)
{
	char snaps[] = "/tmp/cleave-snaps-XXXXXX", path[96], uri[128], st[32], err[512];
	Cleave__Migrator__MigrateRequest req = CLEAVE__MIGRATOR__MIGRATE_REQUEST__INIT;
	uint8_t page[SHM_PAGE_SIZE], want[SHM_PAGE_SIZE];
	struct snap_node src = {0}, dst = {0};
	struct snap_file sf;
	void *blob = NULL;
	size_t len = 0;
	int fd;

	(void)state;
	assert_non_null(mkdtemp(snaps));
	snprintf(path, sizeof(path), "%s/vm.snap", snaps);
	snap_node_start(&src, snaps, NULL, CLEAVE__VCPU__RUN_STATE__RUN_STATE_RUNNING);
	for (uint64_t p = 0; p < 300; p += 3) {
		memset(page, (int)(p % 251) + 1, sizeof(page));
		assert_int_equal(pwrite(src.ram.fd, page, sizeof(page), (off_t)(p * SHM_PAGE_SIZE)),
				 sizeof(page));
	}

	/* Outside the directory: refused before anything starts. */
	req.uri = "file:/tmp/vm.snap";
	assert_int_not_equal(call(src.dir, CLEAVE__MIGRATOR__METHOD__METHOD_MIGRATE, &req.base,
				  NULL, NULL, err, sizeof(err)),
			     0);
	snprintf(uri, sizeof(uri), "a snapshot is a file directly in the snapshot directory %s",
		 snaps);
	if (!strstr(err, uri))
		fail_msg("error: '%s'", err);
	assert_int_equal(src.v.pauses, 0);

	snprintf(uri, sizeof(uri), "file:%s", path);
	req.uri = uri;
	assert_int_equal(call(src.dir, CLEAVE__MIGRATOR__METHOD__METHOD_MIGRATE, &req.base, NULL,
			      NULL, err, sizeof(err)),
			 0);
	snap_node_wait(&src, st, sizeof(st), err, sizeof(err));
	if (strcmp(st, "completed"))
		fail_msg("save: %s '%s'", st, err);
	assert_int_equal(src.v.dirty_on, 1);
	assert_int_equal(src.v.dirty_off, 1);
	assert_int_equal(src.v.saves, 1);
	assert_int_equal(src.v.resumes, 0);
	assert_int_equal(src.v.last_pause_state, CLEAVE__VCPU__RUN_STATE__RUN_STATE_POSTMIGRATE);

	fd = open(path, O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	if (snap_open(&sf, fd, err, sizeof(err)))
		fail_msg("snap_open: %s", err);
	for (uint64_t p = 0; p < src.ram.size / SHM_PAGE_SIZE; p++) {
		int ret = snap_read_page(&sf, 0, p, page);

		assert_true(ret == 0 || ret == 1);
		if (!ret)
			memset(page, 0, sizeof(page));
		assert_int_equal(pread(src.ram.fd, want, sizeof(want), (off_t)(p * SHM_PAGE_SIZE)),
				 sizeof(want));
		assert_memory_equal(page, want, sizeof(page));
	}
	assert_int_equal(snap_read_state(&sf, &blob, &len), 0);
	assert_int_equal(len, 15);
	assert_memory_equal(blob, "vmstate:standin", 15);
	free(blob);
	snap_close(&sf);
	close(fd);

	/* Restored by another migrator, started with --incoming file:. */
	snap_node_start(&dst, snaps, uri, CLEAVE__VCPU__RUN_STATE__RUN_STATE_INMIGRATE);
	snap_node_wait(&dst, st, sizeof(st), err, sizeof(err));
	if (strcmp(st, "completed"))
		fail_msg("restore: %s '%s'", st, err);
	assert_int_equal(dst.v.loads, 1);
	assert_string_equal(dst.v.loaded, "vmstate:standin");
	assert_int_equal(dst.v.resumes, 1);
	for (uint64_t p = 0; p < src.ram.size / SHM_PAGE_SIZE; p++) {
		assert_int_equal(pread(src.ram.fd, want, sizeof(want), (off_t)(p * SHM_PAGE_SIZE)),
				 sizeof(want));
		assert_int_equal(pread(dst.ram.fd, page, sizeof(page), (off_t)(p * SHM_PAGE_SIZE)),
				 sizeof(page));
		assert_memory_equal(page, want, sizeof(page));
	}

	snap_node_stop(&dst);
	snap_node_stop(&src);
	unlink(path);
	rmdir(snaps);
}

/* Sends one fd link message of @len bytes from @m with @nfds fds; returns the answer's err. */
static int fdlink_exchange(int link, const void *m, size_t len, const int *fds, int nfds,
			   uint64_t want_seq)
{
	union {
		char buf[CMSG_SPACE(2 * sizeof(int))];
		struct cmsghdr align;
	} ctl;
	struct iovec iov = {.iov_base = (void *)m, .iov_len = len};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
	struct fdlink_ack ack;
	struct pollfd p = {.fd = link, .events = POLLIN};

	if (nfds) {
		struct cmsghdr *cm;

		memset(&ctl, 0, sizeof(ctl));
		mh.msg_control = ctl.buf;
		mh.msg_controllen = CMSG_SPACE(nfds * sizeof(int));
		cm = CMSG_FIRSTHDR(&mh);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(nfds * sizeof(int));
		memcpy(CMSG_DATA(cm), fds, nfds * sizeof(int));
	}
	assert_int_equal(sendmsg(link, &mh, MSG_NOSIGNAL), (ssize_t)len);
	assert_int_equal(poll(&p, 1, 5000), 1);
	assert_int_equal(recv(link, &ack, sizeof(ack), 0), (ssize_t)sizeof(ack));
	assert_int_equal(ack.magic, FDLINK_MAGIC);
	assert_int_equal(ack.seq, want_seq);
	return ack.err;
}

/*
 * Descriptors of @pid open on what our @fd is open on (a count of all
 * would move with the RPC library's own sockets); the test fails if /proc
 * does not say.
 */
static int proc_fd_refs(pid_t pid, int fd)
{
	char dir[64], path[sizeof(dir) + 256];
	struct stat want, st;
	struct dirent *d;
	DIR *dp;
	int n = 0;

	assert_int_equal(fstat(fd, &want), 0);
	snprintf(dir, sizeof(dir), "/proc/%d/fd", (int)pid);
	dp = opendir(dir);
	assert_non_null(dp);
	while ((d = readdir(dp))) {
		snprintf(path, sizeof(path), "%s/%s", dir, d->d_name);
		if (d->d_name[0] != '.' && !stat(path, &st) && st.st_dev == want.st_dev &&
		    st.st_ino == want.st_ino)
			n++;
	}
	closedir(dp);
	return n;
}

/*
 * The fd link (--fd-link-fd, proto/fd-link.h) in the real process, under
 * its filter: a socket is handed to the session and answered with the
 * session's result; malformed messages (no fd, two fds, a pipe, a name too
 * long, a short or overlong message) are refused with every fd closed, and
 * the process keeps serving without a refused syscall.
 */
static void test_fd_link_process(void **state)
{
	char snaps[] = "/tmp/cleave-snaps-XXXXXX", st[32], err[256];
	struct fdlink_msg m = {.magic = FDLINK_MAGIC, .type = FDLINK_ADD, .name_len = 3};
	struct snap_node n = {0};
	int link[2], sp[2], pp[2], two[2], ret;

	(void)state;
	assert_non_null(mkdtemp(snaps));
	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, link), 0);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp), 0);
	assert_int_equal(pipe2(pp, O_CLOEXEC), 0);
	n.has_fdlink = true;
	n.fdlink_fd = link[1];
	snap_node_start(&n, snaps, NULL, CLEAVE__VCPU__RUN_STATE__RUN_STATE_RUNNING);
	/* Serving once its RPC answers (the link thread starts before the server). */
	for (int64_t t0 = test_now_ms(); test_now_ms() - t0 < 10000; test_sleep_ms(20)) {
		ProtobufCMessage *r = NULL;

		if (!call(n.dir, CLEAVE__MIGRATOR__METHOD__METHOD_QUERY, NULL,
			  &cleave__migrator__migration_info__descriptor, &r, err, sizeof(err))) {
			rpc_msg_free(r);
			break;
		}
	}
	memcpy(m.name, "mig", 3);
	m.seq = 7;
	ret = fdlink_exchange(link[0], &m, sizeof(m), &sp[0], 1, 7);
	/* The session took the socket under its name (mig_session_fd_add). */
	assert_int_equal(ret, 0);

	/* The session holds the socket once; the pipe never. */
	assert_int_equal(proc_fd_refs(n.pid, sp[0]), 1);
	m.seq = 8; /* no fd */
	assert_int_equal(fdlink_exchange(link[0], &m, sizeof(m), NULL, 0, 8), -EBADMSG);
	m.seq = 9; /* two fds */
	two[0] = sp[0];
	two[1] = sp[0];
	assert_int_equal(fdlink_exchange(link[0], &m, sizeof(m), two, 2, 9), -EBADMSG);
	m.seq = 10; /* not a socket */
	assert_int_equal(fdlink_exchange(link[0], &m, sizeof(m), &pp[0], 1, 10), -ENOTSOCK);
	m.seq = 11; /* a name too long */
	m.name_len = FDLINK_NAME_MAX + 1;
	assert_int_equal(fdlink_exchange(link[0], &m, sizeof(m), &sp[0], 1, 11), -EINVAL);
	m.name_len = 3;
	m.seq = 12; /* a NUL in the name */
	m.name[1] = '\0';
	assert_int_equal(fdlink_exchange(link[0], &m, sizeof(m), &sp[0], 1, 12), -EINVAL);
	memcpy(m.name, "mig", 3);
	m.seq = 13; /* too short to be a message, long enough for its seq */
	assert_int_equal(
		fdlink_exchange(link[0], &m, offsetof(struct fdlink_msg, name_len), &sp[0], 1, 13),
		-EBADMSG);
	{
		char big[sizeof(m) + 16] = {0};

		m.seq = 14; /* longer than a message */
		memcpy(big, &m, sizeof(m));
		assert_int_equal(fdlink_exchange(link[0], big, sizeof(big), &sp[0], 1, 14),
				 -EBADMSG);
	}
	m.seq = 15; /* bad magic */
	m.magic = 0;
	assert_int_equal(fdlink_exchange(link[0], &m, sizeof(m), &sp[0], 1, 15), -EBADMSG);
	/* Every fd that came with a refused message was closed. */
	assert_int_equal(proc_fd_refs(n.pid, sp[0]), 1);
	assert_int_equal(proc_fd_refs(n.pid, pp[0]), 0);
	/* Still serving, under its filter. */
	migration_status(n.dir, st, sizeof(st), err, sizeof(err));
	assert_int_equal(kill(n.pid, 0), 0);
	snap_node_stop(&n);
	close(link[0]);
	close(link[1]);
	close(sp[0]);
	close(sp[1]);
	close(pp[0]);
	close(pp[1]);
	rmdir(snaps);
}

/* calc-dirty-rate in the real process, under its filter: both modes measure, the log goes off. */
static void test_dirty_rate_process(void **state)
{
	char snaps[] = "/tmp/cleave-snaps-XXXXXX", err[256];
	Cleave__Migrator__CalcDirtyRateRequest req =
		CLEAVE__MIGRATOR__CALC_DIRTY_RATE_REQUEST__INIT;
	static const char *const modes[] = {"page-sampling", "dirty-bitmap"};
	struct snap_node n = {0};

	(void)state;
	assert_non_null(mkdtemp(snaps));
	snap_node_start(&n, snaps, NULL, CLEAVE__VCPU__RUN_STATE__RUN_STATE_RUNNING);
	for (unsigned int i = 0; i < 2; i++) {
		Cleave__Migrator__DirtyRateInfo *d = NULL;

		req.calc_time = 1;
		req.mode = (char *)modes[i];
		assert_int_equal(call(n.dir, CLEAVE__MIGRATOR__METHOD__METHOD_CALC_DIRTY_RATE,
				      &req.base, NULL, NULL, err, sizeof(err)),
				 0);
		for (int64_t t0 = test_now_ms(); test_now_ms() - t0 < 10000; test_sleep_ms(50)) {
			rpc_msg_free((ProtobufCMessage *)d); /* NULL the first time */
			d = NULL;
			assert_int_equal(call(n.dir,
					      CLEAVE__MIGRATOR__METHOD__METHOD_QUERY_DIRTY_RATE,
					      NULL, &cleave__migrator__dirty_rate_info__descriptor,
					      (ProtobufCMessage **)&d, err, sizeof(err)),
					 0);
			if (strcmp(d->status, "measuring"))
				break;
		}
		assert_string_equal(d->status, "measured");
		assert_string_equal(d->mode, modes[i]);
		assert_true(d->has_dirty_rate);
		assert_int_equal(d->dirty_rate, 0); /* nothing writes its RAM */
		rpc_msg_free(&d->base);
	}
	assert_int_equal(n.v.dirty_on, 1);
	assert_int_equal(n.v.dirty_off, 1);
	snap_node_stop(&n);
	rmdir(snaps);
}

static bool yank_listed(const char *dir)
{
	Cleave__Migrator__YankInfo *y = NULL;
	char err[256];
	bool on;

	assert_int_equal(call(dir, CLEAVE__MIGRATOR__METHOD__METHOD_QUERY_YANK, NULL,
			      &cleave__migrator__yank_info__descriptor, (ProtobufCMessage **)&y,
			      err, sizeof(err)),
			 0);
	on = y->migration;
	rpc_msg_free(&y->base);
	return on;
}

/* MigrationInfo's role and capability flags: *dest, *blocktime. */
static void mig_flags(const char *dir, bool *dest, bool *blocktime)
{
	Cleave__Migrator__MigrationInfo *mi = mig_query(dir);

	*dest = mi->destination;
	*blocktime = mi->postcopy_blocktime;
	rpc_msg_free(&mi->base);
}

/*
 * migrate-start-postcopy's and yank's RPCs in real processes: QEMU 7.2's
 * two refusals of migrate-start-postcopy and the postcopy-ram capability;
 * yank and query-yank with nothing running, on a listening destination and
 * during a migration (held at 1 MB/s over 4 MB of data): with
 * reconnect-timeout 0 the yanked migration fails saying so, with one it
 * reconnects and completes.  The counters of the record, the postcopy ones
 * included, come with every query.
 */
static void test_postcopy_and_yank_process(void **state)
{
	char snaps[] = "/tmp/cleave-snaps-XXXXXX", uri[64], st[32], err[512];
	Cleave__Migrator__Capabilities caps = CLEAVE__MIGRATOR__CAPABILITIES__INIT;
	Cleave__Migrator__MigrateRequest req = CLEAVE__MIGRATOR__MIGRATE_REQUEST__INIT;
	Cleave__Migrator__Capabilities *got = NULL;
	struct snap_node src = {0}, dst = {0};
	uint8_t page[SHM_PAGE_SIZE];
	bool dest, blocktime;

	(void)state;
	assert_non_null(mkdtemp(snaps));
	snap_node_start(&src, snaps, NULL, CLEAVE__VCPU__RUN_STATE__RUN_STATE_RUNNING);
	/* Every page has data: none is skipped or sent as a zero page. */
	for (uint64_t p = 0; p < src.ram.size / SHM_PAGE_SIZE; p++) {
		memset(page, (int)(p % 251) + 1, sizeof(page));
		assert_int_equal(pwrite(src.ram.fd, page, sizeof(page), (off_t)(p * SHM_PAGE_SIZE)),
				 sizeof(page));
	}

	assert_int_equal(call_empty(src.dir, CLEAVE__MIGRATOR__METHOD__METHOD_START_POSTCOPY, err,
				    sizeof(err)),
			 -ENOPROTOOPT);
	assert_string_equal(err, "Enable postcopy with migrate_set_capability before the start "
				 "of migration");
	assert_false(yank_listed(src.dir));
	assert_int_equal(
		call_empty(src.dir, CLEAVE__MIGRATOR__METHOD__METHOD_YANK, err, sizeof(err)),
		-ENOENT);
	assert_string_equal(err, "Instance not found");

	caps.has_postcopy_ram = caps.postcopy_ram = true;
	caps.has_postcopy_blocktime = caps.postcopy_blocktime = true;
	assert_int_equal(call(src.dir, CLEAVE__MIGRATOR__METHOD__METHOD_SET_CAPABILITIES,
			      &caps.base, NULL, NULL, err, sizeof(err)),
			 0);
	assert_int_equal(call(src.dir, CLEAVE__MIGRATOR__METHOD__METHOD_QUERY_CAPABILITIES, NULL,
			      &cleave__migrator__capabilities__descriptor,
			      (ProtobufCMessage **)&got, err, sizeof(err)),
			 0);
	assert_true(got->has_postcopy_ram && got->postcopy_ram);
	assert_true(got->has_postcopy_blocktime && got->postcopy_blocktime);
	assert_false(got->multifd);
	rpc_msg_free(&got->base);
	assert_int_equal(call_empty(src.dir, CLEAVE__MIGRATOR__METHOD__METHOD_START_POSTCOPY, err,
				    sizeof(err)),
			 -ENOENT);
	assert_string_equal(err, "Postcopy must be started after migration has been started");
	/* The migrations below are precopy ones. */
	caps.postcopy_ram = false;
	assert_int_equal(call(src.dir, CLEAVE__MIGRATOR__METHOD__METHOD_SET_CAPABILITIES,
			      &caps.base, NULL, NULL, err, sizeof(err)),
			 0);

	/* reconnect-timeout 0: the yank fails the migration, which says why. */
	dst_node_start(&dst, snaps, uri, sizeof(uri));
	set_params(dst.dir, 0, 0);
	assert_true(yank_listed(dst.dir)); /* listening: QEMU registers it at migrate-incoming */
	set_params(src.dir, 1 << 20, 0);
	req.uri = uri;
	assert_int_equal(call(src.dir, CLEAVE__MIGRATOR__METHOD__METHOD_MIGRATE, &req.base, NULL,
			      NULL, err, sizeof(err)),
			 0);
	wait_status(src.dir, "active");
	assert_true(yank_listed(src.dir));
	assert_int_equal(
		call_empty(src.dir, CLEAVE__MIGRATOR__METHOD__METHOD_YANK, err, sizeof(err)), 0);
	snap_node_wait(&src, st, sizeof(st), err, sizeof(err));
	if (strcmp(st, "failed") || !strstr(err, "yanked"))
		fail_msg("after the yank: %s '%s'", st, err);
	assert_false(yank_listed(src.dir));
	assert_int_equal(
		call_empty(src.dir, CLEAVE__MIGRATOR__METHOD__METHOD_YANK, err, sizeof(err)),
		-ENOENT);
	assert_int_equal(src.v.pauses, 0); /* yanked in precopy: the guest ran on */
	snap_node_stop(&dst);

	/* With a reconnect-timeout: the yanked connections come back, the migration completes. */
	memset(&dst, 0, sizeof(dst));
	dst_node_start(&dst, snaps, uri, sizeof(uri));
	set_params(dst.dir, 0, 10000);
	set_params(src.dir, 1 << 20, 10000);
	assert_int_equal(call(src.dir, CLEAVE__MIGRATOR__METHOD__METHOD_MIGRATE, &req.base, NULL,
			      NULL, err, sizeof(err)),
			 0);
	wait_status(src.dir, "active");
	assert_int_equal(
		call_empty(src.dir, CLEAVE__MIGRATOR__METHOD__METHOD_YANK, err, sizeof(err)), 0);
	for (int64_t t0 = test_now_ms(); mig_counter(src.dir, "resumes") < 1; test_sleep_ms(10))
		if (test_now_ms() - t0 > 20000)
			fail_msg("no resume after the yank: %s",
				 migration_status(src.dir, st, sizeof(st), err, sizeof(err)));
	set_params(src.dir, 0, 10000);
	snap_node_wait(&src, st, sizeof(st), err, sizeof(err));
	if (strcmp(st, "completed"))
		fail_msg("after the reconnect: %s '%s'", st, err);
	assert_int_equal(mig_counter(src.dir, "postcopy_requests"), 0);
	assert_int_equal(mig_counter(src.dir, "postcopy_pulled"), 0);
	assert_int_equal(mig_counter(src.dir, "postcopy_pushed"), 0);
	assert_false(yank_listed(src.dir));
	snap_node_wait(&dst, st, sizeof(st), err, sizeof(err));
	if (strcmp(st, "completed"))
		fail_msg("destination: %s '%s'", st, err);
	assert_false(yank_listed(dst.dir));
	/* What query-migrate needs to ask cleave-vcpu for the blocktime (on the source only). */
	mig_flags(src.dir, &dest, &blocktime);
	assert_false(dest);
	assert_true(blocktime);
	mig_flags(dst.dir, &dest, &blocktime);
	assert_true(dest);
	assert_false(blocktime);

	snap_node_stop(&dst);
	snap_node_stop(&src);
	rmdir(snaps);
}

/* The destination's "vCPU": once the guest runs there, touches every page in a random order. */
struct pc_vcpu {
	struct snap_node *src, *dst;
	pthread_t thread;
	atomic_uint touched, bad;
};

static void *pc_vcpu_main(void *arg)
{
	struct pc_vcpu *c = arg;
	const volatile uint8_t *ram = c->dst->ram.base;
	uint64_t pages = c->dst->ram.size / SHM_PAGE_SIZE, x = 0x2545f4914f6cdd1dull;
	uint8_t want[SHM_PAGE_SIZE], got[SHM_PAGE_SIZE];

	for (int64_t t0 = test_now_ms(); !__atomic_load_n(&c->dst->v.resumes, __ATOMIC_ACQUIRE);
	     test_sleep_ms(1))
		if (test_now_ms() - t0 > 30000)
			return NULL;
	for (uint64_t i = 0; i < pages; i++) {
		uint64_t p;

		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		p = x % pages;
		usleep(4000); /* a slow vCPU: the kills land while pages are still due */
		memcpy(got, (const uint8_t *)ram + p * SHM_PAGE_SIZE, sizeof(got));
		if (pread(c->src->ram.fd, want, sizeof(want), (off_t)(p * SHM_PAGE_SIZE)) !=
			    (ssize_t)sizeof(want) ||
		    memcmp(want, got, sizeof(got)))
			atomic_fetch_add(&c->bad, 1);
		atomic_fetch_add(&c->touched, 1);
	}
	return NULL;
}

/* A connection to the unix socket at @sun, within 10 s; -1 if none. */
static int unix_connect_wait(const struct sockaddr_un *sun)
{
	int fd = -1;

	for (int64_t t0 = test_now_ms(); fd < 0 && test_now_ms() - t0 < 10000; test_sleep_ms(5)) {
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd >= 0 && connect(fd, (const struct sockaddr *)sun, sizeof(*sun))) {
			close(fd);
			fd = -1;
		}
	}
	return fd;
}

/*
 * --incoming unix:PATH, under the filter: it listens there, a stranger's
 * bytes are dropped alone.  SIGTERMed (an upgrade), it leaves the waiting
 * to the next migrator, which listens there again.  Cancelled, it exits
 * on SIGTERM as usual, and the socket file goes with its listener.
 */
static void test_incoming_unix_socket(void **state)
{
	char snaps[] = "/tmp/cleave-snaps-XXXXXX", uri[128], log[96], err[256], *text;
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	struct snap_node n = {0};
	struct stat st;
	int fd;

	(void)state;
	assert_non_null(mkdtemp(snaps));
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s/mig.sock", snaps);
	snprintf(uri, sizeof(uri), "unix:%s", sun.sun_path);
	snap_node_start(&n, snaps, uri, CLEAVE__VCPU__RUN_STATE__RUN_STATE_INMIGRATE);
	fd = unix_connect_wait(&sun);
	assert_true(fd >= 0);
	/* Its group's too (umask 007): another VM's migrator reaches it through a shared group. */
	assert_int_equal(stat(sun.sun_path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0770);
	assert_int_equal(write(fd, "GET / HTTP/1.1\r\n\r\n", 18), 18);
	close(fd);
	/* Still listening for the real source after the stranger. */
	test_sleep_ms(200);
	assert_int_equal(kill(n.pid, 0), 0);
	snprintf(log, sizeof(log), "%s/migrator.log", n.dir);
	text = test_file_read(log);
	assert_non_null(strstr(text, "incoming connection from unix:0 refused: not a cleave "
				     "migration stream"));
	free(text);
	snap_node_term_restart(&n);
	fd = unix_connect_wait(&sun);
	assert_true(fd >= 0);
	close(fd);
	text = test_file_read(log);
	assert_non_null(strstr(text, "exiting with the migration unfinished"));
	assert_non_null(strstr(text, "taking over the incoming migration"));
	free(text);
	assert_int_equal(
		call_empty(n.dir, CLEAVE__MIGRATOR__METHOD__METHOD_CANCEL, err, sizeof(err)), 0);
	snap_node_stop(&n);
	assert_int_equal(stat(sun.sun_path, &st), -1);
	rmdir(snaps);
}

/* The source's guest: rewrites pages at random and logs them dirty, until PAUSE parks it. */
struct pc_dirtier {
	struct snap_node *n;
	pthread_t thread;
	atomic_bool stop;
};

static void *pc_dirtier_main(void *arg)
{
	struct pc_dirtier *d = arg;
	struct standin *v = &d->n->v;
	uint64_t pages = d->n->ram.size / SHM_PAGE_SIZE, x = 0x9e3779b97f4a7c15ull, n = 0;
	uint8_t buf[SHM_PAGE_SIZE];

	while (!atomic_load(&d->stop)) {
		uint64_t p;

		if (atomic_load(&v->pause_req)) {
			atomic_store(&v->parked, true);
			usleep(500);
			continue;
		}
		atomic_store(&v->parked, false);
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		p = x % pages;
		memset(buf, (int)(n++ % 200) + 1, sizeof(buf));
		if (pwrite(d->n->ram.fd, buf, sizeof(buf), (off_t)(p * SHM_PAGE_SIZE)) !=
		    (ssize_t)sizeof(buf))
			abort();
		/* After the write, as KVM's dirty log. */
		shm_bitmap_set(shm_ctl_dirty_bitmap(&d->n->ctl, 0), p);
		if (n % 64 == 0)
			usleep(100);
	}
	return NULL;
}

/*
 * Kill rounds: more per side than MIG_MAX_RESTARTS, which bounds only
 * restarts in a row that moved no data.
 */
#define PC_KILLS 20

/*
 * Postcopy between two real cleave-migrators under their filters, with
 * stand-in vcpu-procs for the RPCs and, on the destination, cleave-vcpu's
 * own postcopy link server and fault service (vcpu-proc/postcopy-link.c)
 * on this process's mapping of its RAM: the destination migrator gets its
 * end of the link as cleave run gives it.  A dirtier rewrites the source's
 * RAM faster than the 2 MiB/s cap carries it, so precopy cannot finish;
 * migrate-start-postcopy switches.  A test thread plays the destination's
 * vCPU and reads every page, slowly, once the guest runs there.  Meanwhile
 * PC_KILLS rounds of SIGKILL (PC_KILLS kills at least) hit the source's
 * migrator, the destination's, or both at once, at random instants (seed
 * printed; CLEAVE_TEST_SEED replays), each started again with the same
 * command line, as the launcher does; every fifth round is a SIGTERM (an
 * upgrade), after which the migrator exits 0 at once and leaves the
 * migration to the next (the source's is SIGTERMed once in precopy too).
 * The migration completes, every page the vCPU read was the source's, RAM
 * ends equal, and the source's guest never resumed.
 */
static void test_postcopy_process_kills(void **state)
{
	char st[32], err[512];
	Cleave__Migrator__MigrateRequest req = CLEAVE__MIGRATOR__MIGRATE_REQUEST__INIT;
	struct pc_pair pp = {0};
	struct snap_node *src = &pp.src, *dst = &pp.dst;
	struct pc_vcpu vc = {.src = src, .dst = dst};
	struct pc_dirtier dirt = {.n = src};
	const char *seed_env = getenv("CLEAVE_TEST_SEED");
	uint64_t seed = seed_env ? strtoull(seed_env, NULL, 0) : (uint64_t)time(NULL), x;
	unsigned int kills = 0, terms = 0, per_side[2] = {0, 0};
	struct pclink_stats ls;
	bool term;
	uint8_t page[SHM_PAGE_SIZE];

	(void)state;
	if (access("/dev/userfaultfd", R_OK | W_OK))
		skip();
	print_message("postcopy kills: seed %llu (CLEAVE_TEST_SEED replays)\n",
		      (unsigned long long)seed);
	x = seed | 1;
	pc_pair_start(&pp);
	set_params(dst->dir, 0, 20000);
	set_params(src->dir, 2 << 20, 20000);
	atomic_store(&src->v.dirtier_live, true);
	assert_int_equal(pthread_create(&dirt.thread, NULL, pc_dirtier_main, &dirt), 0);
	req.uri = pp.uri;
	assert_int_equal(call(src->dir, CLEAVE__MIGRATOR__METHOD__METHOD_MIGRATE, &req.base, NULL,
			      NULL, err, sizeof(err)),
			 0);
	wait_status(src->dir, "active");
	test_sleep_ms(1000);
	/* SIGTERM in precopy (an upgrade): the next migrator carries it on, not cancelled. */
	snap_node_term_restart(src);
	test_sleep_ms(1500); /* the first pass and a round: the dirtier keeps ahead */
	assert_string_equal(migration_status(src->dir, st, sizeof(st), err, sizeof(err)), "active");
	assert_int_equal(src->v.resumes, 0);
	assert_int_equal(call_empty(src->dir, CLEAVE__MIGRATOR__METHOD__METHOD_START_POSTCOPY, err,
				    sizeof(err)),
			 0);
	assert_int_equal(pthread_create(&vc.thread, NULL, pc_vcpu_main, &vc), 0);
	wait_status(dst->dir, "postcopy-active");
	set_params(src->dir, 256 << 10, 20000); /* a slow push: the kills land in postcopy */
	while (kills < PC_KILLS) {
		unsigned int which;

		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		test_sleep_ms(150 + (int)(x % 300));
		if (!strcmp(migration_status(dst->dir, st, sizeof(st), err, sizeof(err)),
			    "completed"))
			break;
		which = (unsigned int)((x >> 20) % 3); /* 0 source, 1 destination, 2 both */
		/* Every fifth round SIGTERMs instead, each side in turn, then both. */
		term = kills % 5 == 4;
		if (term)
			which = (kills / 5) % 3;
		if (which != 1) {
			(term ? snap_node_term_restart : snap_node_kill_restart)(src);
			per_side[0]++;
		}
		if (which != 0) {
			(term ? snap_node_term_restart : snap_node_kill_restart)(dst);
			per_side[1]++;
		}
		terms += term;
		kills++;
	}
	print_message("postcopy kills: %u kill rounds (%u of them SIGTERM), %u of the source, %u "
		      "of the destination\n",
		      kills, terms, per_side[0], per_side[1]);
	assert_true(per_side[0] + per_side[1] >= PC_KILLS);
	set_params(src->dir, 0, 20000);
	snap_node_wait(src, st, sizeof(st), err, sizeof(err));
	if (strcmp(st, "completed"))
		fail_msg("source: %s '%s' (seed %llu)", st, err, (unsigned long long)seed);
	snap_node_wait(dst, st, sizeof(st), err, sizeof(err));
	if (strcmp(st, "completed"))
		fail_msg("destination: %s '%s' (seed %llu)", st, err, (unsigned long long)seed);
	atomic_store(&dirt.stop, true);
	pthread_join(dirt.thread, NULL);
	pthread_join(vc.thread, NULL);
	assert_int_equal(atomic_load(&vc.touched), src->ram.size / SHM_PAGE_SIZE);
	assert_int_equal(atomic_load(&vc.bad), 0);
	for (uint64_t p = 0; p < src->ram.size / SHM_PAGE_SIZE; p++)
		if (!pc_pair_page_same(&pp, p, page))
			fail_msg("page %llu differs (seed %llu)", (unsigned long long)p,
				 (unsigned long long)seed);
	assert_int_equal(src->v.resumes, 0); /* paused at the switch, for good */
	assert_true(dst->v.resumes >= 1);
	pclink_server_stats(pp.srv, &ls);
	assert_false(ls.listening); /* every page in: unregistered */
	assert_true(ls.faults_sent > 0);
	assert_int_equal(ls.refused, 0);
	print_message("postcopy kills: %llu faults sent, %llu pulled, %llu pushed\n",
		      (unsigned long long)ls.faults_sent,
		      (unsigned long long)mig_counter(dst->dir, "postcopy_pulled"),
		      (unsigned long long)mig_counter(dst->dir, "postcopy_pushed"));
	pc_pair_stop(&pp);
}

/* A destination vCPU that reads one word of guest RAM: blocks while its page is missing. */
struct pc_reader {
	const volatile uint64_t *word;
	pthread_t thread;
	atomic_bool done;
	uint64_t value;
};

static void *pc_reader_main(void *arg)
{
	struct pc_reader *rd = arg;

	rd->value = *rd->word;
	atomic_store(&rd->done, true);
	return NULL;
}

/*
 * Starts @pp and its migration, postcopy asked at once, the source's
 * max-bandwidth @bw and reconnect-timeout @reconnect_ms: returns once the
 * destination is postcopy-active.
 */
static void pc_pair_postcopy_at_once(struct pc_pair *pp, uint64_t bw, uint64_t reconnect_ms)
{
	Cleave__Migrator__MigrateRequest req = CLEAVE__MIGRATOR__MIGRATE_REQUEST__INIT;
	char err[512];

	pc_pair_start(pp);
	set_params(pp->dst.dir, 0, 20000);
	set_params(pp->src.dir, bw, reconnect_ms);
	req.uri = pp->uri;
	assert_int_equal(call(pp->src.dir, CLEAVE__MIGRATOR__METHOD__METHOD_MIGRATE, &req.base,
			      NULL, NULL, err, sizeof(err)),
			 0);
	assert_int_equal(call_empty(pp->src.dir, CLEAVE__MIGRATOR__METHOD__METHOD_START_POSTCOPY,
				    err, sizeof(err)),
			 0);
	wait_status(pp->dst.dir, "postcopy-active");
}

static int postcopy_abandon(const char *dir, bool zero_fill, char *err, size_t len)
{
	Cleave__Migrator__PostcopyAbandonRequest req =
		CLEAVE__MIGRATOR__POSTCOPY_ABANDON_REQUEST__INIT;

	req.zero_fill = zero_fill;
	return call(dir, CLEAVE__MIGRATOR__METHOD__METHOD_POSTCOPY_ABANDON, &req.base, NULL, NULL,
		    err, len);
}

/*
 * Postcopy whose source is gone for good, in real processes: the source's
 * migrator is killed early in the push and never started again.  The
 * destination waits (postcopy-paused) and its QUERY lists the missing
 * pages; POSTCOPY_ABANDON is refused on the source and while the source is
 * connected.  Abandoned without zero fill the migration fails and the
 * pages stay missing: a vCPU blocked on one keeps waiting, also once the
 * destination's migrator was SIGKILLed and started again, whose QUERY
 * lists the same pages and which refuses a new migration.  Its zero fill
 * lets the vCPU go on with zeros; every page that came is the source's.
 */
static void test_postcopy_source_gone_process(void **state)
{
	char err[512];
	Cleave__Migrator__MigrateRequest req = CLEAVE__MIGRATOR__MIGRATE_REQUEST__INIT;
	Cleave__Migrator__MigrationInfo *mi;
	struct pc_pair pp = {0};
	struct snap_node *src = &pp.src, *dst = &pp.dst;
	struct pc_reader rd = {0};
	uint8_t page[SHM_PAGE_SIZE], zero[SHM_PAGE_SIZE] = {0};
	uint64_t missing, zeroed = 0;
	int status;

	(void)state;
	if (access("/dev/userfaultfd", R_OK | W_OK))
		skip();
	/* At once: 4 MiB at 1 MiB/s, most of it still at the source. */
	pc_pair_postcopy_at_once(&pp, 1 << 20, 1000);
	assert_int_equal(postcopy_abandon(dst->dir, true, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "no postcopy waiting for a lost peer"));
	assert_int_equal(postcopy_abandon(src->dir, false, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "(source, status: postcopy-active)"));
	for (int64_t t0 = test_now_ms();
	     mig_counter(dst->dir, "postcopy_pushed") < 16 && test_now_ms() - t0 < 10000;)
		test_sleep_ms(20);
	assert_int_equal(kill(src->pid, SIGKILL), 0);
	assert_int_equal(waitpid(src->pid, &status, 0), src->pid);
	src->pid = 0; /* gone for good */
	wait_status(dst->dir, "postcopy-paused");
	mi = mig_query(dst->dir);
	missing = mi->postcopy_missing;
	print_message("source gone: %llu pages missing, %zu runs listed, the first at 0x%llx\n",
		      (unsigned long long)missing, mi->n_postcopy_missing_runs,
		      mi->n_postcopy_missing_runs
			      ? (unsigned long long)mi->postcopy_missing_runs[0]->gpa
			      : 0ull);
	assert_true(missing > 0 && missing < dst->ram.size / SHM_PAGE_SIZE);
	assert_true(mi->n_postcopy_missing_runs >= 1);
	rd.word = (const volatile uint64_t *)((const uint8_t *)dst->ram.base +
					      mi->postcopy_missing_runs[0]->gpa);
	rpc_msg_free(&mi->base);
	assert_int_equal(pthread_create(&rd.thread, NULL, pc_reader_main, &rd), 0);
	test_sleep_ms(200);
	assert_false(atomic_load(&rd.done)); /* waits for a page that cannot come */
	assert_int_equal(postcopy_abandon(dst->dir, false, err, sizeof(err)), 0);
	wait_status(dst->dir, "failed");
	/* The missing pages outlive the migrator that saw them. */
	snap_node_kill_restart(dst);
	mi = mig_query(dst->dir);
	assert_string_equal(mi->status, "failed");
	assert_non_null(strstr(mi->error_desc, "postcopy abandoned by the operator"));
	assert_int_equal(mi->postcopy_missing, missing);
	rpc_msg_free(&mi->base);
	req.uri = pp.uri;
	assert_int_equal(call(dst->dir, CLEAVE__MIGRATOR__METHOD__METHOD_MIGRATE, &req.base, NULL,
			      NULL, err, sizeof(err)),
			 -ENODATA);
	assert_non_null(strstr(err, "pages its postcopy migration never brought"));
	assert_int_equal(postcopy_abandon(dst->dir, false, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "only zero-fill is left"));
	assert_false(atomic_load(&rd.done));
	assert_int_equal(postcopy_abandon(dst->dir, true, err, sizeof(err)), 0);
	pthread_join(rd.thread, NULL);
	assert_int_equal(rd.value, 0);
	mi = mig_query(dst->dir);
	assert_int_equal(mi->postcopy_missing, 0);
	rpc_msg_free(&mi->base);
	for (uint64_t p = 0; p < src->ram.size / SHM_PAGE_SIZE; p++) {
		if (pc_pair_page_same(&pp, p, page))
			continue;
		assert_memory_equal(page, zero, sizeof(zero)); /* one that never came */
		zeroed++;
	}
	assert_true(zeroed <= missing);
	pc_pair_stop(&pp);
}

/* @dir stays in @want for @ms while nothing comes: its pushed-page count does not move. */
static void assert_held(const char *dir, const char *want, int ms)
{
	uint64_t pushed = mig_counter(dir, "postcopy_pushed");
	char st[32], err[512];

	test_sleep_ms(ms);
	assert_string_equal(migration_status(dir, st, sizeof(st), err, sizeof(err)), want);
	assert_int_equal(mig_counter(dir, "postcopy_pushed"), pushed);
}

/*
 * migrate-pause in real processes, each side in turn, the paused side's
 * migrator SIGKILLed and started again while it is held: the new process
 * obeys the pause (it is in the session record) and does not reconnect
 * until migrate {resume: true} on the source, migrate-recover on the
 * destination.  Then the migration completes, every page the source's.
 */
static void test_postcopy_pause_process(void **state)
{
	char st[32], err[512];
	Cleave__Migrator__MigrateRequest req = CLEAVE__MIGRATOR__MIGRATE_REQUEST__INIT;
	Cleave__Migrator__MigrateRecoverRequest rec =
		CLEAVE__MIGRATOR__MIGRATE_RECOVER_REQUEST__INIT;
	struct pc_pair pp = {0};
	struct snap_node *src = &pp.src, *dst = &pp.dst;
	uint8_t page[SHM_PAGE_SIZE];

	(void)state;
	if (access("/dev/userfaultfd", R_OK | W_OK))
		skip();
	pc_pair_postcopy_at_once(&pp, 512 << 10, 20000);
	/* The source paused, then restarted: it stays held. */
	assert_int_equal(call_empty(src->dir, CLEAVE__MIGRATOR__METHOD__METHOD_MIGRATE_PAUSE, err,
				    sizeof(err)),
			 0);
	assert_string_equal(migration_status(src->dir, st, sizeof(st), err, sizeof(err)),
			    "postcopy-paused");
	wait_status(dst->dir, "postcopy-paused");
	snap_node_kill_restart(src);
	wait_status(src->dir, "postcopy-paused");
	assert_held(dst->dir, "postcopy-paused", 1500);
	assert_string_equal(migration_status(src->dir, st, sizeof(st), err, sizeof(err)),
			    "postcopy-paused");
	/* QEMU's refusals: each command on its side and in its state only. */
	assert_int_equal(call_empty(dst->dir, CLEAVE__MIGRATOR__METHOD__METHOD_MIGRATE_PAUSE, err,
				    sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "only supported during postcopy-active"));
	rec.uri = pp.uri;
	assert_int_equal(call(src->dir, CLEAVE__MIGRATOR__METHOD__METHOD_MIGRATE_RECOVER, &rec.base,
			      NULL, NULL, err, sizeof(err)),
			 -EINVAL);
	assert_string_equal(err, "Migrate recover can only be run when postcopy is paused.");
	req.uri = pp.uri;
	req.resume = true;
	assert_int_equal(call(dst->dir, CLEAVE__MIGRATOR__METHOD__METHOD_MIGRATE, &req.base, NULL,
			      NULL, err, sizeof(err)),
			 -EINVAL);
	assert_string_equal(err, "Cannot resume if there is no paused migration");
	assert_int_equal(call(src->dir, CLEAVE__MIGRATOR__METHOD__METHOD_MIGRATE, &req.base, NULL,
			      NULL, err, sizeof(err)),
			 0);
	wait_status(dst->dir, "postcopy-active");
	/* The destination paused, then restarted: it stays held, its source calls in vain. */
	assert_int_equal(call_empty(dst->dir, CLEAVE__MIGRATOR__METHOD__METHOD_MIGRATE_PAUSE, err,
				    sizeof(err)),
			 0);
	wait_status(src->dir, "postcopy-paused");
	snap_node_kill_restart(dst);
	wait_status(dst->dir, "postcopy-paused");
	assert_held(dst->dir, "postcopy-paused", 1500);
	set_params(src->dir, 0, 20000);
	assert_int_equal(call(dst->dir, CLEAVE__MIGRATOR__METHOD__METHOD_MIGRATE_RECOVER, &rec.base,
			      NULL, NULL, err, sizeof(err)),
			 0);
	snap_node_wait(src, st, sizeof(st), err, sizeof(err));
	if (strcmp(st, "completed"))
		fail_msg("source: %s '%s'", st, err);
	snap_node_wait(dst, st, sizeof(st), err, sizeof(err));
	if (strcmp(st, "completed"))
		fail_msg("destination: %s '%s'", st, err);
	for (uint64_t p = 0; p < src->ram.size / SHM_PAGE_SIZE; p++)
		if (!pc_pair_page_same(&pp, p, page))
			fail_msg("page %llu differs", (unsigned long long)p);
	assert_int_equal(src->v.resumes, 0);
	pc_pair_stop(&pp);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_filtered_before_untrusted_input),
		cmocka_unit_test(test_tls_params_process),
		cmocka_unit_test(test_save_and_restore),
		cmocka_unit_test(test_incoming_unix_socket),
		cmocka_unit_test(test_fd_link_process),
		cmocka_unit_test(test_dirty_rate_process),
		cmocka_unit_test(test_postcopy_and_yank_process),
		cmocka_unit_test(test_postcopy_process_kills),
		cmocka_unit_test(test_postcopy_source_gone_process),
		cmocka_unit_test(test_postcopy_pause_process),
	};

	if (argc != 2) {
		fprintf(stderr, "usage: %s CLEAVE_MIGRATOR\n", argv[0]);
		return 2;
	}
	migrator_bin = argv[1];
	return cmocka_run_group_tests(tests, NULL, NULL);
}
