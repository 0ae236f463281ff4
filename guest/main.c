// SPDX-License-Identifier: GPL-2.0-only
/*
 * cleave-guest ring-3 main: cpu 0 parses the command line, waits for the
 * other vCPUs, lays out the test area and releases them; then every vCPU
 * stamps its share of the area and idles (verifying) or keeps dirtying
 * it, printing heartbeats.  Everything here runs in ring 3.
 */
#include "guest.h"

#define AP_WAIT_CPUS_NS	  (2 * NSEC)	    /* cpus=N given: they must all answer */
#define AP_WAIT_ANY_NS	  (200 * 1000000UL) /* no cpus=: take whoever answers */
#define IDLE_VERIFY_PAGES 16384		    /* 64 MiB per heartbeat at most */

static const char *const mode_names[] = {"idle", "dirty", "poweroff"};

static bool str_eq_n(const char *a, const char *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (a[i] != b[i])
			return false;
	return b[n] == '\0';
}

static uint64_t parse_u64(const char *s, size_t n)
{
	uint64_t v = 0;

	for (size_t i = 0; i < n && s[i] >= '0' && s[i] <= '9'; i++)
		v = v * 10 + (uint64_t)(s[i] - '0');
	return v;
}

/* key=value words separated by spaces; unknown words are ignored. */
static void cmdline_parse(struct guest_config *cfg, const char *s)
{
	*cfg = (struct guest_config){.mode = MODE_IDLE, .mib = 16, .hb_ms = 1000};
	while (s && *s) {
		while (*s == ' ')
			s++;
		const char *key = s, *val;
		while (*s && *s != ' ' && *s != '=')
			s++;
		size_t klen = (size_t)(s - key);
		if (*s != '=')
			continue;
		val = ++s;
		while (*s && *s != ' ')
			s++;
		size_t vlen = (size_t)(s - val);
		uint64_t v = parse_u64(val, vlen);
		if (str_eq_n(key, "mode", klen)) {
			for (int m = 0; m < 3; m++)
				if (str_eq_n(val, mode_names[m], vlen))
					cfg->mode = (enum guest_mode)m;
		} else if (str_eq_n(key, "mib", klen) && v) {
			cfg->mib = v;
		} else if (str_eq_n(key, "rate", klen)) {
			cfg->rate = v;
		} else if (str_eq_n(key, "cpus", klen)) {
			cfg->cpus = (uint32_t)v;
		} else if (str_eq_n(key, "report", klen)) {
			cfg->report = v != 0;
		} else if (str_eq_n(key, "seconds", klen)) {
			cfg->seconds = v;
		} else if (str_eq_n(key, "hb", klen) && v) {
			cfg->hb_ms = v;
		} else if (str_eq_n(key, "crash", klen)) {
			cfg->crash = (uint32_t)v;
		}
	}
}

static void heartbeat(struct gcpu *c, uint64_t now)
{
	uint64_t hb = g.cfg.hb_ms * 1000000;

	if (now < c->next_hb_ns)
		return;
	serial_printf("HB %u %lu %lu\n", c->idx, c->gen, now);
	c->next_hb_ns += hb;
	if (c->next_hb_ns <= now) /* fell behind (e.g. paused): no burst of heartbeats */
		c->next_hb_ns = now + hb;
}

static uint64_t end_ns(void)
{
	return g.cfg.seconds ? g.t0_ns + g.cfg.seconds * NSEC : UINT64_MAX;
}

/* Heartbeat, seconds= and dirty-mode pacing; pages.c calls it every few pages. */
void worker_tick(struct gcpu *c, uint64_t pages_written)
{
	uint64_t now = clock_ns(c);

	heartbeat(c, now);
	if (c->idx == 0 && now >= end_ns()) {
		uint64_t ok = 0;
		serial_printf("DONE %lu s\n", g.cfg.seconds);
		ucall(c, UCALL_DONE, &ok, 1, NULL);
		guest_poweroff(0);
	}
	if (!c->ns_per_page || !pages_written)
		return;
	c->paced_pages += pages_written;
	uint64_t target = c->pace_t0_ns + c->paced_pages * c->ns_per_page;
	if (now > target + 100 * 1000000UL) {
		/* Far behind (paused, migrated): restart pacing instead of bursting. */
		c->pace_t0_ns = now;
		c->paced_pages = 0;
		return;
	}
	while (now < target) {
		uint64_t until = target < c->next_hb_ns ? target : c->next_hb_ns;
		clock_sleep_until(c, until);
		now = clock_ns(c);
		heartbeat(c, now);
	}
}

static void __attribute__((noreturn)) park(struct gcpu *c)
{
	for (;;)
		clock_sleep_until(c, clock_ns(c) + 3600 * NSEC);
}

static void __attribute__((noreturn)) worker(struct gcpu *c)
{
	c->next_hb_ns = UINT64_MAX;    /* no heartbeat before READY */
	pages_write_pass(c, 1, false); /* unpaced: READY as soon as the area is stamped */
	if (g.cfg.report)
		pages_report(c, 1);
	serial_printf("READY %u\n", c->idx);
	c->next_hb_ns = c->pace_t0_ns = clock_ns(c);
	if (g.cfg.rate)
		c->ns_per_page = PAGE_SIZE * NSEC * g.ncpus / (g.cfg.rate * MIB);
	/* Test hooks: each must end in ASSERT and exit code 3. */
	if (g.cfg.crash == 1 && c->idx == 0)
		__asm__ volatile("ud2");
	if (g.cfg.crash == 2 && c->idx == 0)
		pages_corrupt(c);
	if (g.cfg.mode == MODE_DIRTY) {
		for (uint64_t gen = 2;; gen++) {
			pages_write_pass(c, gen, true);
			if (g.cfg.report)
				pages_report(c, gen);
		}
	}
	for (;;) {
		worker_tick(c, 0);
		pages_verify_slice(c, IDLE_VERIFY_PAGES);
		uint64_t until = c->next_hb_ns;
		if (c->idx == 0 && end_ns() < until)
			until = end_ns();
		clock_sleep_until(c, until);
	}
}

/* Wait for the APs started in cpu.c; returns how many vCPUs will work. */
static uint32_t bsp_wait_aps(struct gcpu *c)
{
	uint32_t want = g.cfg.cpus ? g.cfg.cpus : MAX_CPUS, n;
	uint64_t limit = g.t0_ns + (g.cfg.cpus ? AP_WAIT_CPUS_NS : AP_WAIT_ANY_NS);

	while ((n = 1 + __atomic_load_n(&g.online, __ATOMIC_ACQUIRE)) < want && clock_ns(c) < limit)
		cpu_relax();
	/* cpus=N vCPUs were created but not all came up. */
	GUEST_ASSERT(c, n >= (g.cfg.cpus ? g.cfg.cpus : 1), n, g.cfg.cpus);
	if (g.cfg.cpus && n > g.cfg.cpus)
		n = g.cfg.cpus;
	return n;
}

static void __attribute__((noreturn)) bsp_main(struct gcpu *c)
{
	const struct hvm_start_info *si = (const void *)(uintptr_t)boot_start_info;
	uint64_t ring3_tsc = rdtsc_ordered();

	GUEST_ASSERT(c, si->magic == HVM_START_MAGIC, si->magic, HVM_START_MAGIC);
	GUEST_ASSERT(c, si->version >= 1 && si->memmap_paddr, si->version, si->memmap_paddr);
	cmdline_parse(&g.cfg, si->cmdline_paddr ? (const char *)(uintptr_t)si->cmdline_paddr : "");
	GUEST_ASSERT(c, g.has_kvmclock, 0, 0);
	g.t0_ns = clock_ns(c);
	if (g.cfg.mode == MODE_POWEROFF) {
		serial_printf("cleave-guest: cpus=%u mode=poweroff\n", g.cfg.cpus ? g.cfg.cpus : 1);
		guest_poweroff(0);
	}
	g.ncpus = bsp_wait_aps(c);
	area_layout();

	uint64_t image[6] = {IMAGE_BASE,   (uint64_t)(uintptr_t)_end - IMAGE_BASE,
			     TRAMP_PA,	   PAGE_SIZE,
			     g.ext[0].gpa, g.area_pages * PAGE_SIZE};
	ucall(c, UCALL_IMAGE, image, 6, "image");
	serial_printf("cleave-guest: cpus=%u mode=%s mib=%lu rate=%lu hb=%lu clock=%s halt=%s "
		      "area=0x%lx boot-us=%lu ring0-us=%lu\n",
		      g.ncpus, mode_names[g.cfg.mode], g.cfg.mib, g.cfg.rate, g.cfg.hb_ms,
		      (c->pvti.flags & PVCLOCK_TSC_STABLE) ? "stable" : "per-cpu",
		      g.can_halt ? "tsc-deadline" : "spin", g.ext[0].gpa,
		      clock_tsc_to_ns(c, rdtsc_ordered() - boot_tsc) / 1000,
		      clock_tsc_to_ns(c, ring3_tsc - boot_tsc) / 1000);
	/* Pairs with the acquire load in ap_main: config and layout are visible. */
	__atomic_store_n(&g.go, 1, __ATOMIC_RELEASE);
	worker(c);
}

static void __attribute__((noreturn)) ap_main(struct gcpu *c)
{
	__atomic_fetch_add(&g.online, 1, __ATOMIC_RELEASE);
	while (!__atomic_load_n(&g.go, __ATOMIC_ACQUIRE))
		cpu_relax();
	if (c->idx >= g.ncpus)
		park(c);
	worker(c);
}

void ring3_main(uint32_t idx)
{
	struct gcpu *c = &g.cpu[idx];

	if (idx == 0)
		bsp_main(c);
	ap_main(c);
}
