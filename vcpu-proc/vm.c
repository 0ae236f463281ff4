// SPDX-License-Identifier: GPL-2.0-only
/* VM creation and teardown, memslots, guest loading, exit requests. */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log/log.h"
#include "vcpu-proc/clock.h"
#include "vcpu-proc/loader.h"
#include "vcpu-proc/state.h"
#include "vcpu-proc/vm.h"

#define VM_IMAGE_MAX	 (256u << 20) /* bytes of guest ELF we accept */
#define VM_TSS_ADDR	 0xfffbd000u  /* 3 pages below 4 GiB, outside RAM (VMX real mode) */
#define VM_IDENTITY_ADDR 0xfffbc000u

static int vm_read_image(struct vm *vm, int fd)
{
	struct stat st;
	uint8_t *buf;
	size_t off = 0;

	if (fstat(fd, &st) < 0) {
		log_err("guest image: fstat fd %d: %s", fd, strerror(errno));
		return -errno;
	}
	if (st.st_size <= 0 || (uint64_t)st.st_size > VM_IMAGE_MAX) {
		log_err("guest image: bad size %lld bytes", (long long)st.st_size);
		return -ENOEXEC;
	}
	buf = malloc((size_t)st.st_size);
	if (!buf)
		return -ENOMEM;
	while (off < (size_t)st.st_size) {
		ssize_t n = pread(fd, buf + off, (size_t)st.st_size - off, (off_t)off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			log_err("guest image: read fd %d: %s", fd,
				n ? strerror(errno) : "short file");
			free(buf);
			return n ? -errno : -ENOEXEC;
		}
		off += (size_t)n;
	}
	vm->image = buf;
	vm->image_size = off;
	return 0;
}

/* (Re)registers @r's memslot with its current flags; caller holds it exclusive. */
int vm_memslot_set(struct vm *vm, struct region *r)
{
	struct kvm_userspace_memory_region m = {
		.slot = r->id,
		.flags = r->flags,
		.guest_phys_addr = r->gpa,
		.memory_size = r->size,
		.userspace_addr = (uintptr_t)r->hva,
	};

	region_assert_locked_write(r);
	if (ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &m) < 0) {
		int err = -errno;

		log_err("KVM_SET_USER_MEMORY_REGION slot %u: %s", r->id, strerror(errno));
		return err;
	}
	return 0;
}

static int vm_memory_init(struct vm *vm, const struct vm_config *cfg)
{
	const struct shm_ctl_header *h;
	int ret;

	ret = shm_ctl_open(&vm->ctl, cfg->ctl_fd);
	if (ret) {
		log_err("control segment fd %d: %s", cfg->ctl_fd, strerror(-ret));
		return ret;
	}
	h = vm->ctl.hdr;
	if (h->nr_regions == 0 || h->nr_regions != cfg->nr_ram_fds || h->nr_regions > REGION_MAX) {
		log_err("control segment has %u regions, --ram-fds gave %u", h->nr_regions,
			cfg->nr_ram_fds);
		return -EINVAL;
	}
	for (unsigned int i = 0; i < h->nr_regions; i++) {
		struct region *r;

		ret = shm_region_open(&vm->ram[i], cfg->ram_fds[i], h->regions[i].size,
				      PROT_READ | PROT_WRITE);
		if (ret) {
			log_err("RAM region %u fd %d: %s", i, cfg->ram_fds[i], strerror(-ret));
			return ret;
		}
		vm->nr_ram++;
		vm->harvest_map[i] =
			calloc(SHM_BITMAP_WORDS(h->regions[i].nr_pages), sizeof(uint64_t));
		if (!vm->harvest_map[i])
			return -ENOMEM;
		ret = region_table_add(&vm->regions, i, h->regions[i].gpa, h->regions[i].size,
				       vm->ram[i].base, shm_ctl_dirty_bitmap(&vm->ctl, i), &r);
		if (ret) {
			log_err("RAM region %u at 0x%" PRIx64 ": %s", i, h->regions[i].gpa,
				strerror(-ret));
			return ret;
		}
		ret = vm_memslot_set(vm, r);
		region_unlock_write(r);
		if (ret)
			return ret;
	}
	return 0;
}

static int vm_kvm_init(struct vm *vm)
{
	struct kvm_enable_cap cap = {
		.cap = KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2,
		.args[0] = KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE,
	};
	struct kvm_pit_config pit = {0};
	int ret;

	vm->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (vm->kvm_fd < 0) {
		log_err("open /dev/kvm: %s", strerror(errno));
		return -errno;
	}
	if (ioctl(vm->kvm_fd, KVM_GET_API_VERSION, 0) != KVM_API_VERSION) {
		log_err("KVM_GET_API_VERSION: not %d", KVM_API_VERSION);
		return -EINVAL;
	}
	ret = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_MAX_VCPUS);
	vm->max_vcpus = ret > 0 ? (unsigned int)ret : 1;
	vm->run_size = ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (vm->run_size < (int)sizeof(struct kvm_run)) {
		log_err("KVM_GET_VCPU_MMAP_SIZE: %s", strerror(errno));
		return -EINVAL;
	}
	vm->vm_fd = ioctl(vm->kvm_fd, KVM_CREATE_VM, 0);
	if (vm->vm_fd < 0) {
		log_err("KVM_CREATE_VM: %s", strerror(errno));
		return -errno;
	}
	ret = ioctl(vm->vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2);
	if (ret <= 0 || !(ret & KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE)) {
		log_err("KVM lacks KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2");
		return -EOPNOTSUPP;
	}
	/* Before any memslot: the cap applies to slots created afterwards. */
	if (ioctl(vm->vm_fd, KVM_ENABLE_CAP, &cap) < 0) {
		log_err("KVM_ENABLE_CAP MANUAL_DIRTY_LOG_PROTECT2: %s", strerror(errno));
		return -errno;
	}
	/* Needed for real mode on VMX; other backends may refuse, which is fine. */
	if (ioctl(vm->vm_fd, KVM_SET_TSS_ADDR, VM_TSS_ADDR) < 0)
		log_debug("KVM_SET_TSS_ADDR: %s", strerror(errno));
	{
		uint64_t id_map = VM_IDENTITY_ADDR;

		if (ioctl(vm->vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &id_map) < 0)
			log_debug("KVM_SET_IDENTITY_MAP_ADDR: %s", strerror(errno));
	}
	if (ioctl(vm->vm_fd, KVM_CREATE_IRQCHIP, 0) < 0) {
		log_err("KVM_CREATE_IRQCHIP: %s", strerror(errno));
		return -errno;
	}
	pit.flags = KVM_PIT_SPEAKER_DUMMY;
	if (ioctl(vm->vm_fd, KVM_CREATE_PIT2, &pit) < 0)
		log_warn("KVM_CREATE_PIT2: %s (no PIT)", strerror(errno));
	return 0;
}

/* A bad image fails at start, also with --incoming where it is not loaded yet. */
static int vm_check_guest(struct vm *vm)
{
	struct loader_ram ram[REGION_MAX];
	struct loader_boot boot;
	char err[LOADER_ERR_LEN] = "";
	unsigned int nr = 0;
	int ret;

	for (unsigned int i = 0; i < vm->nr_ram; i++)
		ram[nr++] = (struct loader_ram){vm->ctl.hdr->regions[i].gpa, vm->ram[i].size,
						vm->ram[i].base};
	ret = loader_check(vm->image, vm->image_size, ram, nr, &boot, err, sizeof(err));
	if (ret)
		log_err("guest image: %s", err);
	return ret;
}

static int vcpu_create(struct vm *vm, struct vcpu *v, unsigned int index)
{
	int ret;

	v->vm = vm;
	v->index = index;
	v->fd = ioctl(vm->vm_fd, KVM_CREATE_VCPU, (unsigned long)index);
	if (v->fd < 0) {
		log_err("KVM_CREATE_VCPU %u: %s", index, strerror(errno));
		return -errno;
	}
	v->run = mmap(NULL, (size_t)vm->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, v->fd, 0);
	if (v->run == MAP_FAILED) {
		v->run = NULL;
		log_err("mmap kvm_run of vcpu %u: %s", index, strerror(errno));
		return -errno;
	}
	ret = vcpu_cpuid_set(v);
	if (ret)
		return ret;
	/* What RESET returns to: KVM's power-on state plus our CPUID. */
	ret = vcpu_state_save(vm->kvm_fd, v->fd, index, &v->reset_state);
	if (ret) {
		log_err("vcpu %u: saving the reset state: %s", index, strerror(-ret));
		return ret;
	}
	v->have_reset_state = true;
	return 0;
}

int vm_init(struct vm *vm, const struct vm_config *cfg)
{
	int ret;

	memset(vm, 0, sizeof(*vm));
	vm->kvm_fd = vm->vm_fd = -1;
	vm->ctl.fd = -1;
	for (unsigned int i = 0; i < SHM_MAX_REGIONS; i++)
		vm->ram[i].fd = -1;
	vm->cmdline = cfg->cmdline;
	vm->state = VM_PRELAUNCH;
	vm->resume_state = VM_RUNNING;
	ret = region_table_init(&vm->regions);
	if (ret)
		return ret;
	ret = serial_init(&vm->serial, cfg->serial_fd);
	if (ret) {
		region_table_fini(&vm->regions);
		return ret;
	}
	ret = ratelimit_init(&vm->guest_log, cfg->guest_log_rate, 2 * cfg->guest_log_rate);
	if (ret) {
		serial_fini(&vm->serial);
		region_table_fini(&vm->regions);
		return ret;
	}
	pthread_mutex_init(&vm->ctrl_lock, NULL);
	pthread_mutex_init(&vm->lock, NULL);
	pthread_mutex_init(&vm->announce_lock, NULL);
	pthread_cond_init(&vm->cond, NULL);
	vm->announced = VM_PRELAUNCH;
	/* From here on vm_fini() undoes whatever part of the rest succeeded. */
	vm->alive = true;

	ret = vm_read_image(vm, cfg->guest_fd);
	if (ret)
		return ret;
	ret = vm_kvm_init(vm);
	if (ret)
		return ret;
	ret = vm_memory_init(vm, cfg);
	if (ret)
		return ret;
	ret = vm_check_guest(vm);
	if (ret)
		return ret;
	ret = vm_cpuid_init(vm);
	if (ret)
		return ret;
	if (cfg->nr_vcpus == 0 || cfg->nr_vcpus > vm->max_vcpus) {
		log_err("--vcpus %u: KVM allows 1..%u", cfg->nr_vcpus, vm->max_vcpus);
		return -EINVAL;
	}
	vm->vcpus = calloc(cfg->nr_vcpus, sizeof(*vm->vcpus));
	if (!vm->vcpus)
		return -ENOMEM;
	for (unsigned int i = 0; i < cfg->nr_vcpus; i++)
		vm->vcpus[i].fd = -1;
	vm->nr_vcpus = cfg->nr_vcpus;
	for (unsigned int i = 0; i < cfg->nr_vcpus; i++) {
		ret = vcpu_create(vm, &vm->vcpus[i], i);
		if (ret)
			return ret;
	}
	return 0;
}

void vm_fini(struct vm *vm)
{
	if (!vm->alive)
		return; /* never initialised, or already finished */
	vm->alive = false;
	for (unsigned int i = 0; vm->vcpus && i < vm->nr_vcpus; i++) {
		struct vcpu *v = &vm->vcpus[i];

		assert(!v->thread_started);
		vcpu_state_release(&v->reset_state);
		if (v->run)
			munmap(v->run, (size_t)vm->run_size);
		if (v->fd >= 0)
			close(v->fd);
	}
	free(vm->vcpus);
	vm->vcpus = NULL;
	vm->nr_vcpus = 0;
	for (unsigned int i = 0; i < REGION_MAX; i++)
		region_table_remove(&vm->regions, i); /* -ENOENT for unused slots */
	region_table_fini(&vm->regions);
	if (vm->vm_fd >= 0)
		close(vm->vm_fd);
	if (vm->kvm_fd >= 0)
		close(vm->kvm_fd);
	vm->vm_fd = vm->kvm_fd = -1;
	for (unsigned int i = 0; i < SHM_MAX_REGIONS; i++) {
		free(vm->harvest_map[i]);
		vm->harvest_map[i] = NULL;
		if (vm->ram[i].fd >= 0 || vm->ram[i].base)
			shm_region_close(&vm->ram[i]);
	}
	if (vm->ctl.hdr)
		shm_ctl_close(&vm->ctl);
	free(vm->cpuid);
	vm->cpuid = NULL;
	free((void *)vm->image);
	vm->image = NULL;
	serial_fini(&vm->serial);
	ratelimit_fini(&vm->guest_log);
	pthread_cond_destroy(&vm->cond);
	pthread_mutex_destroy(&vm->lock);
	pthread_mutex_destroy(&vm->ctrl_lock);
}

/* 32-bit protected mode, paging off, flat 4 GiB segments (the PVH entry ABI). */
static int vcpu_boot_regs_set(struct vcpu *v, const struct loader_boot *boot)
{
	struct kvm_segment code = {
		.base = 0,
		.limit = 0xffffffff,
		.selector = 0x8,
		.type = 11,
		.present = 1,
		.dpl = 0,
		.db = 1,
		.s = 1,
		.l = 0,
		.g = 1,
	};
	struct kvm_segment data = code;
	struct kvm_sregs sregs;
	struct kvm_regs regs = {0};

	if (ioctl(v->fd, KVM_GET_SREGS, &sregs) < 0)
		goto err;
	data.selector = 0x10;
	data.type = 3;
	sregs.cs = code;
	sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = data;
	sregs.tr.base = 0;
	sregs.tr.limit = 0x67;
	sregs.tr.selector = 0;
	sregs.tr.type = 11; /* busy 32-bit TSS */
	sregs.tr.present = 1;
	sregs.tr.s = 0;
	sregs.cr0 = 0x11; /* PE | ET */
	sregs.cr3 = 0;
	sregs.cr4 = 0;
	sregs.efer = 0;
	if (ioctl(v->fd, KVM_SET_SREGS, &sregs) < 0)
		goto err;
	regs.rip = boot->entry;
	regs.rbx = boot->start_info;
	regs.rflags = 0x2;
	if (ioctl(v->fd, KVM_SET_REGS, &regs) < 0)
		goto err;
	return 0;
err:
	log_err("vcpu %u: setting the boot registers: %s", v->index, strerror(errno));
	return -errno;
}

int vm_load_guest(struct vm *vm)
{
	struct loader_ram ram[REGION_MAX];
	struct region *held[REGION_MAX];
	struct loader_boot boot;
	char err[LOADER_ERR_LEN] = "";
	unsigned int nr = 0;
	int ret;

	/* Table, then regions in id order (docs/LOCKING.md); the loader writes guest RAM. */
	region_table_lock_read(&vm->regions);
	for (unsigned int i = 0; i < REGION_MAX; i++) {
		struct region *r = region_table_get(&vm->regions, i);

		if (!r)
			continue;
		region_lock_read(r);
		held[nr] = r;
		ram[nr] = (struct loader_ram){r->gpa, r->size, r->hva};
		nr++;
	}
	ret = loader_load(vm->image, vm->image_size, ram, nr, vm->cmdline, &boot, err, sizeof(err));
	for (unsigned int i = 0; i < nr; i++)
		region_unlock_read(held[nr - 1 - i]);
	region_table_unlock_read(&vm->regions);
	if (ret) {
		log_err("guest image: %s", err);
		return ret;
	}
	vm_dirty_mark(vm, 0, LOADER_BOOT_END); /* boot info; segments below */
	for (unsigned int i = 0; i < nr; i++)
		vm_dirty_mark(vm, ram[i].gpa, ram[i].size);
	log_debug("guest entry 0x%x, start info at 0x%x", boot.entry, boot.start_info);
	return vcpu_boot_regs_set(&vm->vcpus[0], &boot);
}

int vm_clock_now(struct vm *vm, uint64_t *ns)
{
	struct kvm_clock_data d = {0};

	if (ioctl(vm->vm_fd, KVM_GET_CLOCK, &d) < 0)
		return -errno;
	*ns = d.clock;
	return 0;
}

void vm_request_exit(struct vm *vm, enum vm_exit_reason why, int status)
{
	pthread_mutex_lock(&vm->lock);
	if (vm->exit_reason == VM_EXIT_NONE) {
		vm->exit_reason = why;
		vm->exit_status = status;
	}
	pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);
}

/* Set by the SIGTERM/SIGINT handler, polled by vm_wait(). */
static volatile sig_atomic_t vm_signalled;

void vm_note_signal(void)
{
	vm_signalled = 1;
}

enum vm_exit_reason vm_wait(struct vm *vm, int *status)
{
	enum vm_exit_reason why;

	pthread_mutex_lock(&vm->lock);
	for (;;) {
		struct timespec ts;

		if (vm_signalled && vm->exit_reason == VM_EXIT_NONE) {
			vm->exit_reason = VM_EXIT_SIGNAL;
			vm->exit_status = 0;
		}
		if (vm->exit_reason != VM_EXIT_NONE)
			break;
		if (vm->reset_requested) {
			vm->reset_requested = false;
			pthread_mutex_unlock(&vm->lock);
			if (vm_reset(vm, true))
				vm_request_exit(vm, VM_EXIT_ERROR, VM_EXIT_FAILURE);
			pthread_mutex_lock(&vm->lock);
			continue;
		}
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 100 * 1000 * 1000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		pthread_cond_timedwait(&vm->cond, &vm->lock, &ts);
	}
	why = vm->exit_reason;
	*status = vm->exit_status;
	pthread_mutex_unlock(&vm->lock);
	return why;
}

void vm_publish(struct vm *vm, Cleave__Events__Event *ev)
{
	int ret;

	if (!vm->pub)
		return;
	ret = rpc_pub_send(vm->pub, ev);
	if (ret)
		log_warn("publishing event %d: %s", (int)ev->body_case, strerror(-ret));
}
