// SPDX-License-Identifier: GPL-2.0-only
/* `cleave run` option parsing: every accepted form and every rejection text. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>

#include "launcher/options.h"

#define MAX_VCPUS 8 /* the host limit the tests pretend to have */

struct bad_case {
	const char *args[8]; /* after "run", NULL-terminated */
	const char *err;     /* expected substring of the message */
};

static const struct bad_case bad_cases[] = {
	{{"--memory", "0"}, "--memory '0': too small (at least 2M)"},
	{{"--restart-limit", "10"}, "--restart-limit '10': N/SECONDS"},
	{{"--restart-limit", "0/60"}, "N restarts (1..64)"},
	{{"--restart-limit", "65/60"}, "--restart-limit '65/60'"},
	{{"--restart-limit", "10/0"}, "SECONDS (1..3600)"},
	{{"--restart-limit", "10/3601"}, "--restart-limit '10/3601'"},
	{{"--restart-limit", "10/60s"}, "--restart-limit '10/60s'"},
	{{"--restart-limit", "-1/60"}, "--restart-limit '-1/60'"},
	{{"--restart-limit", "10/-60"}, "--restart-limit '10/-60'"},
	{{"--restart-limit", "/60"}, "--restart-limit '/60'"},
	{{"--memory", "1M"}, "too small"},
	{{"--memory", "1001K"}, "--memory '1001K': not a multiple of the 4096-byte page"},
	{{"--memory", "2T"}, "--memory '2T': too large (at most 1024G)"},
	{{"--memory", "99999999999999999999"}, "too large"},
	{{"--memory", "18446744073709551615G"}, "too large"},
	{{"--memory", "17179869184G"}, "too large"},
	{{"--memory", "12X"}, "--memory '12X': not a size"},
	{{"--memory", "12MB"}, "not a size"},
	{{"--memory", "-1G"}, "not a size"},
	{{"--memory", ""}, "not a size"},
	{{"--memory"}, "option '--memory' needs a value"},
	{{"--vcpus", "0"}, "--vcpus '0': must be 1..8 on this host"},
	{{"--vcpus", "9"}, "must be 1..8"},
	{{"--vcpus", "-1"}, "--vcpus '-1': not a number"},
	{{"--vcpus", "2x"}, "not a number"},
	{{"--vcpus", "99999999999999999999999"}, "not a number"},
	{{"--qmp", "stdio"}, "--qmp 'stdio': expected unix:PATH or tcp:ADDR:PORT"},
	{{"--qmp", "unix:"}, "empty socket path"},
	{{"--qmp",
	  "unix:/tmp/"
	  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"},
	 "socket path longer than 107 bytes"},
	/* Off loopback only with TLS, whatever else is given. */
	{{"--qmp", "tcp:0.0.0.0:4444"},
	 "--qmp 'tcp:0.0.0.0:4444': a non-loopback address needs TLS credentials "
	 "(--qmp-tls-x509 DIR or --qmp-tls-psk FILE); plaintext QMP stays on loopback"},
	{{"--qmp", "tcp:10.1.2.3:4444"}, "needs TLS credentials"},
	{{"--qmp", "tcp:example.com:4444"}, "'example.com' is not an IPv4 address"},
	{{"--qmp", "tcp:127.0.0.1:0"}, "port must be 1..65535"},
	{{"--qmp", "tcp:127.0.0.1:65536"}, "port must be 1..65535"},
	{{"--qmp", "tcp:127.0.0.1"}, "expected tcp:ADDR:PORT"},
	{{"--qmp", "tcp:4444"}, "expected tcp:ADDR:PORT"},
	/* Loopback is every local user's: plaintext TCP QMP only when asked for. */
	{{"--qmp", "tcp:127.0.0.1:4444"},
	 "--qmp 'tcp:127.0.0.1:4444': QMP over TCP without TLS has no authentication and any "
	 "local user can reach loopback; give --qmp-tls-x509 DIR or --qmp-tls-psk FILE, use a "
	 "unix: socket (mode 0600), or --qmp-insecure-tcp"},
	{{"--qmp-insecure-tcp", "--qmp", "tcp:10.1.2.3:4444"},
	 "needs TLS credentials (--qmp-tls-x509 DIR or --qmp-tls-psk FILE)"},
	{{"--qmp-tls-x509", "/nonexistent", "--qmp", "tcp:0.0.0.0:4444"},
	 "--qmp-tls-x509 '/nonexistent': No such file"},
	{{"--qmp-tls-x509", "/etc/hostname"}, "--qmp-tls-x509 '/etc/hostname': not a directory"},
	{{"--qmp-tls-psk", "/"}, "--qmp-tls-psk '/': not a regular file"},
	{{"--qmp-tls-x509", "/", "--qmp-tls-psk", "/etc/hostname", "--qmp", "tcp:0.0.0.0:1"},
	 "--qmp-tls-x509 and --qmp-tls-psk: one kind of credentials"},
	{{"--qmp-tls-x509", "/", "--qmp-insecure-tcp", "--qmp", "tcp:127.0.0.1:1"},
	 "--qmp-insecure-tcp contradicts the QMP TLS credentials given"},
	{{"--qmp-tls-authz", "CN=x", "--qmp", "unix:/tmp/q"},
	 "--qmp-tls-authz needs credentials (--qmp-tls-x509 or --qmp-tls-psk)"},
	{{"--qmp-tls-x509", "/", "--qmp", "unix:/tmp/q"},
	 "--qmp-tls-x509 / --qmp-tls-psk: no --qmp tcp: socket to use them"},
	{{"--qmp-max-clients", "0"}, "--qmp-max-clients '0': must be a number 1..3968"},
	{{"--qmp-max-clients", "3969"}, "must be a number 1..3968"},
	{{"--qmp-max-clients", "-1"}, "must be a number"},
	{{"--qmp-input-limit", "1M"}, "--qmp-input-limit '1M': must be a size 4M..4G"},
	{{"--qmp-input-limit", "5G"}, "must be a size 4M..4G"},
	{{"--qmp-input-limit", "lots"}, "must be a size"},
	{{"--qmp-handshake-timeout", "soon"}, "--qmp-handshake-timeout 'soon': must be a number"},
	{{"--qmp-partial-timeout", "3600001"},
	 "--qmp-partial-timeout '3600001': must be a number 0..3600000"},
	{{"--serial", "pty"}, "--serial 'pty': expected stdio or file:PATH"},
	{{"--serial", "file:"}, "expected stdio or file:PATH"},
	{{"--incoming", "tcp:host"},
	 "--incoming 'tcp:host': expected tcp:HOST:PORT, unix:PATH, file:PATH or defer"},
	{{"--incoming", "tcp::4444"}, "expected tcp:HOST:PORT, unix:PATH, file:PATH or defer"},
	{{"--incoming", "tcp:1.2.3.4:x"}, "--incoming 'tcp:1.2.3.4:x': port must be 1..65535"},
	{{"--incoming", "udp:/x"}, "expected tcp:HOST:PORT, unix:PATH, file:PATH or defer"},
	{{"--name", ""}, "must be 1..64 characters"},
	{{"--name", "a/b"}, "only letters, digits"},
	{{"--name", "..x"}, "must not start with '.' or '-'"},
	{{"--guest", "/nonexistent/guest.elf"}, "--guest '/nonexistent/guest.elf': No such file"},
	{{"--guest", "/"}, "not a regular file"},
	{{"--state-dir", ""}, "--state-dir: empty path"},
	{{"--state-dir",
	  "/tmp/"
	  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	  "aaaaaa"},
	 "too long for the sockets inside"},
	{{"--bogus"}, "unknown option '--bogus'"},
	{{"-x"}, "unknown option '-x'"},
	{{"stray"}, "unexpected argument 'stray'"},
	{{"--no-sandbox=1"}, "option '--no-sandbox' takes no value"},
	{{"--migrate-tls-x509", "/nonexistent"}, "--migrate-tls-x509 '/nonexistent': No such file"},
	{{"--migrate-tls-x509", "/etc/hostname"}, "not a directory"},
	{{"--snapshot-dir", "/nonexistent"}, "--snapshot-dir '/nonexistent': No such file"},
	{{"--snapshot-dir", "/etc/hostname"}, "--snapshot-dir '/etc/hostname': not a directory"},
	{{"--migrate-tls-psk", "/"}, "--migrate-tls-psk '/': not a regular file"},
	{{"--migrate-tls-x509", "/", "--migrate-tls-psk", "/etc/hostname"},
	 "one kind of credentials"},
	{{"--migrate-tls-x509", "/", "--migrate-insecure-plaintext"}, "contradicts"},
	{{"--migrate-tls-authz", "CN=x"}, "need credentials"},
	{{"--incoming", "tcp:0.0.0.0:4444"}, "a non-loopback address needs TLS credentials"},
	{{"--incoming", "tcp:192.0.2.1:4444"}, "--migrate-insecure-plaintext"},
	{{"--migrate-tls-x509", "/", "--migrate-tls-psk-identity", "x"}, "need credentials"},
};

static int parse(struct run_options *o, const char *const *args, char *err, size_t len)
{
	char *argv[16];
	int argc = 0;

	argv[argc++] = (char *)"run";
	while (args && *args)
		argv[argc++] = (char *)*args++;
	argv[argc] = NULL;
	return run_options_parse(o, argc, argv, MAX_VCPUS, err, len);
}

/* A path as given; a bare name is ip's /run/netns/NAME; what is not there is refused. */
/*
 * With QMP TLS credentials (absolute: the monitor's jail binds them) a
 * tcp: QMP socket may be on any address and needs no --qmp-insecure-tcp.
 */
static void test_qmp_tls(void **state)
{
	const char *x509[] = {"--qmp",	     "tcp:0.0.0.0:4444", "--qmp-tls-x509",
			      "/etc/../etc", "--qmp-tls-authz",	 "CN=a,O=b;CN=c",
			      "--qmp",	     "unix:/tmp/q",	 NULL};
	const char *psk[] = {"--qmp-tls-psk", "/etc/../etc/hostname", "--qmp", "tcp:127.0.0.1:4444",
			     NULL};
	struct run_options o;
	char err[256];

	(void)state;
	assert_int_equal(parse(&o, x509, err, sizeof(err)), 0);
	assert_string_equal(o.qmp_tls_x509_dir, "/etc");
	assert_string_equal(o.qmp_tls_psk_file, "");
	assert_string_equal(o.qmp_tls_authz, "CN=a,O=b;CN=c");
	assert_int_equal(o.qmp[0].kind, RUN_EP_TCP);
	assert_int_equal(o.qmp[0].addr, 0);
	assert_false(o.qmp_insecure_tcp);
	/* The migration's credentials are another matter. */
	assert_string_equal(o.tls_x509_dir, "");
	assert_int_equal(parse(&o, psk, err, sizeof(err)), 0);
	assert_string_equal(o.qmp_tls_psk_file, "/etc/hostname");
	assert_string_equal(o.qmp_tls_x509_dir, "");
}

static void test_migrate_netns(void **state)
{
	const char *path[] = {"--migrate-netns", "/proc/self/ns/net", NULL};
	const char *name[] = {"--migrate-netns", "cleave-no-such-ns", NULL};
	const char *empty[] = {"--migrate-netns", "", NULL};
	struct run_options o;
	char err[256];

	(void)state;
	assert_int_equal(parse(&o, path, err, sizeof(err)), 0);
	assert_string_equal(o.migrate_netns, "/proc/self/ns/net");
	assert_int_not_equal(parse(&o, name, err, sizeof(err)), 0);
	assert_non_null(strstr(err, "/run/netns/cleave-no-such-ns"));
	assert_int_not_equal(parse(&o, empty, err, sizeof(err)), 0);
	assert_non_null(strstr(err, "--migrate-netns"));
	assert_int_equal(parse(&o, NULL, err, sizeof(err)), 0);
	assert_string_equal(o.migrate_netns, "");
}

/*
 * The snapshot directory reaches the launcher as a resolved absolute path;
 * --incoming file:PATH restores from PATH's directory, which is the
 * snapshot directory unless another was given (then refused).
 */
static void test_snapshot_dir(void **state)
{
	const char *args[] = {"--snapshot-dir", "/tmp/../tmp/", NULL};
	char dir[] = "/tmp/cleave-opt-XXXXXX", file[64], hidden[64], in[80], in_hidden[80];
	struct run_options o;
	char err[256];
	int fd;

	(void)state;
	assert_int_equal(parse(&o, args, err, sizeof(err)), 0);
	assert_string_equal(o.snapshot_dir, "/tmp");
	assert_int_equal(parse(&o, NULL, err, sizeof(err)), 0);
	assert_string_equal(o.snapshot_dir, "");

	assert_non_null(mkdtemp(dir));
	snprintf(file, sizeof(file), "%s/vm.snap", dir);
	snprintf(hidden, sizeof(hidden), "%s/.vm.snap", dir);
	fd = open(file, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	close(fd);
	fd = open(hidden, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	close(fd);
	snprintf(in, sizeof(in), "file:%s/../%s/vm.snap", dir, strrchr(dir, '/') + 1);
	snprintf(in_hidden, sizeof(in_hidden), "file:%s", hidden);
	{
		const char *restore[] = {"--incoming", in, NULL};
		const char *elsewhere[] = {"--incoming", in, "--snapshot-dir", "/tmp", NULL};
		const char *same[] = {"--snapshot-dir", dir, "--incoming", in, NULL};
		const char *dot[] = {"--incoming", in_hidden, NULL};
		const char *missing[] = {"--incoming", "file:/nonexistent/vm.snap", NULL};
		const char *notfile[] = {"--incoming", "file:/tmp", NULL};

		assert_int_equal(parse(&o, restore, err, sizeof(err)), 0);
		assert_int_equal(o.incoming, RUN_INCOMING_FILE);
		assert_string_equal(o.incoming_uri + 5, file);
		assert_string_equal(o.snapshot_dir, dir);
		assert_int_equal(parse(&o, same, err, sizeof(err)), 0);
		assert_int_not_equal(parse(&o, elsewhere, err, sizeof(err)), 0);
		assert_non_null(strstr(err, "not directly in --snapshot-dir /tmp"));
		assert_int_not_equal(parse(&o, dot, err, sizeof(err)), 0);
		assert_non_null(strstr(err, "does not start with '.'"));
		assert_int_not_equal(parse(&o, missing, err, sizeof(err)), 0);
		assert_non_null(strstr(err, "No such file"));
		assert_int_not_equal(parse(&o, notfile, err, sizeof(err)), 0);
		assert_non_null(strstr(err, "not a regular file"));
	}
	unlink(file);
	unlink(hidden);
	rmdir(dir);
}

/*
 * --incoming unix:PATH: PATH's directory (resolved; the socket itself does
 * not exist yet) becomes the migration socket directory unless another
 * was given (then refused).
 */
static void test_incoming_unix(void **state)
{
	const char *ok[] = {"--incoming", "unix:/tmp/../tmp/mig.sock", NULL};
	const char *same[] = {"--migrate-socket-dir", "/tmp", "--incoming", "unix:/tmp/m.sock",
			      NULL};
	const char *other[] = {"--migrate-socket-dir", "/", "--incoming", "unix:/tmp/m.sock", NULL};
	const char *nodir[] = {"--incoming", "unix:/nonexistent/m.sock", NULL};
	const char *noname[] = {"--incoming", "unix:/tmp/", NULL};
	struct run_options o;
	char err[256];

	(void)state;
	assert_int_equal(parse(&o, ok, err, sizeof(err)), 0);
	assert_int_equal(o.incoming, RUN_INCOMING_UNIX);
	assert_string_equal(o.incoming_uri, "unix:/tmp/mig.sock");
	assert_string_equal(o.migrate_socket_dir, "/tmp");
	assert_int_equal(parse(&o, same, err, sizeof(err)), 0);
	assert_int_not_equal(parse(&o, other, err, sizeof(err)), 0);
	assert_non_null(strstr(err, "not directly in --migrate-socket-dir /"));
	assert_int_not_equal(parse(&o, nodir, err, sizeof(err)), 0);
	assert_non_null(strstr(err, "No such file"));
	assert_int_not_equal(parse(&o, noname, err, sizeof(err)), 0);
	assert_non_null(strstr(err, "expected unix:PATH of a socket"));
}

/* --migrate-tls-creds: directories (x509) or files (PSK), absolute, up to MIG_TLS_MORE_MAX. */
static void test_migrate_tls_more(void **state)
{
	const char *ok[] = {"--migrate-tls-creds", "/etc/../etc", "--migrate-tls-creds",
			    "/etc/hostname", NULL};
	const char *five[] = {"--migrate-tls-creds",
			      "/",
			      "--migrate-tls-creds",
			      "/",
			      "--migrate-tls-creds",
			      "/",
			      "--migrate-tls-creds",
			      "/",
			      "--migrate-tls-creds",
			      "/",
			      NULL};
	const char *missing[] = {"--migrate-tls-creds", "/nonexistent", NULL};
	const char *dev[] = {"--migrate-tls-creds", "/dev/null", NULL};
	struct run_options o;
	char err[256];

	(void)state;
	assert_int_equal(parse(&o, ok, err, sizeof(err)), 0);
	assert_int_equal(o.nr_tls_more, 2);
	assert_string_equal(o.tls_more[0], "/etc");
	assert_string_equal(o.tls_more[1], "/etc/hostname");
	assert_int_not_equal(parse(&o, five, err, sizeof(err)), 0);
	assert_non_null(strstr(err, "--migrate-tls-creds: at most 4"));
	assert_int_not_equal(parse(&o, missing, err, sizeof(err)), 0);
	assert_non_null(strstr(err, "No such file"));
	assert_int_not_equal(parse(&o, dev, err, sizeof(err)), 0);
	assert_non_null(strstr(err, "neither a directory (x509) nor a file (keys.psk)"));
}

/* Credentials reach the migrator as absolute paths (its jail binds them). */
static void test_migrate_tls(void **state)
{
	const char *args[] = {"--migrate-tls-x509", "/etc/../etc", "--migrate-tls-authz",
			      "CN=a,O=b;CN=c", NULL};
	struct run_options o;
	char err[256];

	(void)state;
	assert_int_equal(parse(&o, args, err, sizeof(err)), 0);
	assert_string_equal(o.tls_x509_dir, "/etc");
	assert_string_equal(o.tls_authz, "CN=a,O=b;CN=c");
	assert_string_equal(o.tls_psk_file, "");
	assert_false(o.insecure_plaintext);
	/* Plaintext off the host only when asked for; loopback needs nothing. */
	{
		const char *off[] = {"--incoming", "tcp:0.0.0.0:4444",
				     "--migrate-insecure-plaintext", NULL};
		const char *lo[] = {"--incoming", "tcp:[::1]:4444", NULL};

		assert_int_equal(parse(&o, off, err, sizeof(err)), 0);
		assert_true(o.insecure_plaintext);
		assert_int_equal(parse(&o, lo, err, sizeof(err)), 0);
	}
}

static void test_bad_values(void **state)
{
	struct run_options o;
	char err[256];
	size_t i;

	for (i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
		if (parse(&o, bad_cases[i].args, err, sizeof(err)) != -EINVAL)
			fail_msg("case %zu (%s %s) accepted", i, bad_cases[i].args[0],
				 bad_cases[i].args[1] ? bad_cases[i].args[1] : "");
		if (!strstr(err, bad_cases[i].err))
			fail_msg("case %zu: got \"%s\", want \"%s\"", i, err, bad_cases[i].err);
	}
}

/* A migration killed often under cleave run needs more than the default 10 per minute. */
static void test_restart_limit(void **state)
{
	const char *args[] = {"--restart-limit", "40/120", NULL};
	struct run_options o;
	char err[256];

	assert_int_equal(parse(&o, args, err, sizeof(err)), 0);
	assert_int_equal(o.restart_limit, 40);
	assert_int_equal(o.restart_window_s, 120);
}

static void test_defaults(void **state)
{
	const char *args[] = {NULL};
	struct run_options o;
	char err[256], want[64];

	assert_int_equal(parse(&o, args, err, sizeof(err)), 0);
	assert_int_equal(o.memory, 512ULL << 20);
	assert_int_equal(o.vcpus, 1);
	assert_null(o.guest);
	assert_int_equal(o.serial, RUN_SERIAL_STDIO);
	assert_int_equal(o.nr_qmp, 0);
	assert_int_equal(o.incoming, RUN_INCOMING_NONE);
	assert_false(o.no_sandbox);
	assert_false(o.verbose);
	assert_string_equal(o.cmdline, "cpus=1");
	assert_int_equal(o.restart_limit, 0); /* the supervisor's default */
	snprintf(want, sizeof(want), "vm-%d", (int)getpid());
	assert_string_equal(o.name, want);
	assert_non_null(strstr(o.state_dir, want));
}

static void test_sizes(void **state)
{
	static const struct {
		const char *s;
		uint64_t bytes;
	} ok[] = {
		{"0", 0},	    {"512", 512ULL << 20},  {"4k", 4096},
		{"4K", 4096},	    {"2m", 2ULL << 20},	    {"3G", 3ULL << 30},
		{"1t", 1ULL << 40}, {"16384T", 1ULL << 54},
	};
	static const struct {
		const char *s;
		int ret;
	} bad[] = {
		{"", -EINVAL},
		{"G", -EINVAL},
		{"1GB", -EINVAL},
		{" 1", -EINVAL},
		{"1.5G", -EINVAL},
		{"16777216T", -ERANGE},
		{"18446744073709551616", -ERANGE},
	};
	uint64_t v;
	size_t i;

	for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		assert_int_equal(run_size_parse(ok[i].s, &v), 0);
		assert_int_equal(v, ok[i].bytes);
	}
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(run_size_parse(bad[i].s, &v), bad[i].ret);
}

static void test_full_command_line(void **state)
{
	char *argv[] = {"run",
			"--name=vm1",
			"-m",
			"4G",
			"--vcpus",
			"8",
			"--append",
			"mode=idle hb=10",
			"--serial",
			"file:/tmp/s.log",
			"--qmp",
			"unix:/tmp/a.sock",
			"--qmp=tcp:localhost:4444",
			"--qmp",
			"tcp:127.0.0.2:5555",
			"--state-dir",
			"/tmp/st",
			"--incoming",
			"tcp:0.0.0.0:7777",
			"--migrate-insecure-plaintext", /* 0.0.0.0 is not loopback */
			"--qmp-insecure-tcp",		/* the tcp: QMP sockets above */
			"--no-sandbox",
			"-v",
			NULL};
	struct run_options o;
	char err[256];

	assert_int_equal(run_options_parse(&o, 23, argv, MAX_VCPUS, err, sizeof(err)), 0);
	assert_string_equal(o.name, "vm1");
	assert_int_equal(o.memory, 4ULL << 30);
	assert_int_equal(o.vcpus, 8);
	assert_string_equal(o.cmdline, "mode=idle hb=10 cpus=8");
	assert_int_equal(o.serial, RUN_SERIAL_FILE);
	assert_string_equal(o.serial_path, "/tmp/s.log");
	assert_int_equal(o.nr_qmp, 3);
	assert_int_equal(o.qmp[0].kind, RUN_EP_UNIX);
	assert_string_equal(o.qmp[0].path, "/tmp/a.sock");
	assert_int_equal(o.qmp[1].kind, RUN_EP_TCP);
	assert_int_equal(o.qmp[1].addr, 0x7f000001);
	assert_int_equal(o.qmp[1].port, 4444);
	assert_int_equal(o.qmp[2].addr, 0x7f000002);
	assert_string_equal(o.state_dir, "/tmp/st");
	assert_int_equal(o.incoming, RUN_INCOMING_TCP);
	assert_string_equal(o.incoming_uri, "tcp:0.0.0.0:7777");
	assert_true(o.no_sandbox);
	assert_true(o.verbose);
	assert_true(o.qmp_insecure_tcp);
}

/* QMP limits: not given means the monitor's defaults; given ones are kept as parsed. */
static void test_qmp_limits(void **state)
{
	const char *none[] = {NULL};
	const char *all[] = {"--qmp-max-clients",
			     "16",
			     "--qmp-input-limit",
			     "8M",
			     "--qmp-handshake-timeout",
			     "0",
			     "--qmp-partial-timeout",
			     "2500",
			     NULL};
	struct run_options o;
	char err[256];

	(void)state;
	assert_int_equal(parse(&o, none, err, sizeof(err)), 0);
	assert_int_equal(o.qmp_max_clients, 0);
	assert_int_equal(o.qmp_input_limit, 0);
	assert_int_equal(o.qmp_handshake_ms, -1);
	assert_int_equal(o.qmp_partial_ms, -1);
	assert_false(o.qmp_insecure_tcp);
	assert_int_equal(parse(&o, all, err, sizeof(err)), 0);
	assert_int_equal(o.qmp_max_clients, 16);
	assert_int_equal(o.qmp_input_limit, 8ULL << 20);
	assert_int_equal(o.qmp_handshake_ms, 0);
	assert_int_equal(o.qmp_partial_ms, 2500);
}

static void test_incoming_defer_and_help(void **state)
{
	const char *defer[] = {"--incoming", "defer", NULL};
	const char *help[] = {"--vcpus", "1", "--help", NULL};
	struct run_options o;
	char err[256];

	assert_int_equal(parse(&o, defer, err, sizeof(err)), 0);
	assert_int_equal(o.incoming, RUN_INCOMING_DEFER);
	assert_null(o.incoming_uri);
	assert_int_equal(parse(&o, help, err, sizeof(err)), 0);
	assert_true(o.help);
}

static void test_qmp_limit(void **state)
{
	char *argv[2 + 2 * (RUN_QMP_MAX + 1)];
	char paths[RUN_QMP_MAX + 1][32];
	struct run_options o;
	char err[256];
	int argc = 0, i;

	argv[argc++] = "run";
	for (i = 0; i <= RUN_QMP_MAX; i++) {
		snprintf(paths[i], sizeof(paths[i]), "unix:/tmp/q%d", i);
		argv[argc++] = "--qmp";
		argv[argc++] = paths[i];
	}
	argv[argc] = NULL;
	assert_int_equal(run_options_parse(&o, argc, argv, MAX_VCPUS, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "at most 8 QMP sockets"));
	assert_int_equal(run_options_parse(&o, argc - 2, argv, MAX_VCPUS, err, sizeof(err)), 0);
	assert_int_equal(o.nr_qmp, RUN_QMP_MAX);
}

static void test_append_too_long(void **state)
{
	char *big = malloc(RUN_APPEND_MAX);
	const char *args[] = {"--append", big, NULL};
	struct run_options o;
	char err[256];

	assert_non_null(big);
	memset(big, 'x', RUN_APPEND_MAX - 4);
	big[RUN_APPEND_MAX - 4] = '\0';
	assert_int_equal(parse(&o, args, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "guest command line longer than"));
	big[RUN_APPEND_MAX - 20] = '\0';
	assert_int_equal(parse(&o, args, err, sizeof(err)), 0);
	free(big);
}

static void test_host_max_vcpus(void **state)
{
	unsigned int n = run_host_max_vcpus();

	assert_true(n >= 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bad_values),
		cmocka_unit_test(test_migrate_tls),
		cmocka_unit_test(test_migrate_tls_more),
		cmocka_unit_test(test_snapshot_dir),
		cmocka_unit_test(test_incoming_unix),
		cmocka_unit_test(test_qmp_tls),
		cmocka_unit_test(test_migrate_netns),
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_restart_limit),
		cmocka_unit_test(test_sizes),
		cmocka_unit_test(test_full_command_line),
		cmocka_unit_test(test_incoming_defer_and_help),
		cmocka_unit_test(test_qmp_limit),
		cmocka_unit_test(test_qmp_limits),
		cmocka_unit_test(test_append_too_long),
		cmocka_unit_test(test_host_max_vcpus),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
