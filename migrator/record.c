/* SPDX-License-Identifier: GPL-2.0-only */
/* The session record in the ctl segment's session area (see record.h). */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "log/log.h"
#include "migrator/record.h"

_Static_assert(sizeof(struct mig_record) <= SHM_SESSION_SIZE, "session area too small");
int mig_record_open(struct mig_record **out, struct shm_ctl *ctl, bool *created)
{
	struct mig_record *rec = shm_ctl_session(ctl);
	int ret;

	*created = false;
	if (!rec || ctl->hdr->session_size < sizeof(*rec))
		return -EINVAL;
	/*
	 * The launcher creates the session area zeroed; the first migrator
	 * initialises it.  A restarted migrator finds the magic and keeps
	 * what its predecessor recorded.
	 */
	if (rec->magic != MIG_RECORD_MAGIC || rec->version != MIG_RECORD_VERSION) {
		memset(rec, 0, sizeof(*rec));
		ret = shm_lock_init(&rec->lock);
		if (ret)
			return ret;
		rec->version = MIG_RECORD_VERSION;
		rec->magic = MIG_RECORD_MAGIC;
		*created = true;
	}
	*out = rec;
	return 0;
}

int mig_record_lock(struct mig_record *rec)
{
	int ret = shm_lock_acquire_timeout(&rec->lock, MIG_RECORD_LOCK_MS);

	if (ret == -EOWNERDEAD) {
		/* Every field is written whole; a dead writer leaves stale, not torn, data. */
		log_warn("session record: previous holder died, recovering");
		shm_lock_mark_consistent(&rec->lock);
		ret = 0;
	}
	return ret;
}

void mig_record_unlock(struct mig_record *rec)
{
	shm_lock_release(&rec->lock);
}

void mig_record_set_receivedmap_live(struct mig_record *rec, bool live)
{
	bool locked = mig_record_lock(rec) == 0;

	/* Pairs with the acquire load in mig_record_receivedmap_live(). */
	__atomic_store_n(&rec->receivedmap_live, live ? 1u : 0u, __ATOMIC_RELEASE);
	if (locked)
		mig_record_unlock(rec);
}

bool mig_record_receivedmap_live(struct mig_record *rec)
{
	return __atomic_load_n(&rec->receivedmap_live, __ATOMIC_ACQUIRE) != 0;
}

void mig_record_set_phase(struct mig_record *rec, enum mig_phase phase)
{
	bool locked = mig_record_lock(rec) == 0;

	rec->phase = phase;
	if (locked)
		mig_record_unlock(rec);
}

enum mig_phase mig_record_phase(struct mig_record *rec)
{
	enum mig_phase p;
	bool locked = mig_record_lock(rec) == 0;

	p = rec->phase;
	if (locked)
		mig_record_unlock(rec);
	return p;
}

struct mig_give_up mig_record_give_up(enum mig_phase phase, enum mig_role role)
{
	static const struct mig_give_up table[] = {
		[MIG_PHASE_NONE] = {MIG_STATUS_FAILED, false, false},
		[MIG_PHASE_SRC_PRECOPY] = {MIG_STATUS_FAILED, false, true},
		[MIG_PHASE_SRC_PAUSED] = {MIG_STATUS_FAILED, true, true},
		/* The destination may run it: only the operator can say. */
		[MIG_PHASE_SRC_COMMITTED] = {MIG_STATUS_UNKNOWN, false, false},
		[MIG_PHASE_DST_LISTENING] = {MIG_STATUS_FAILED, false, false},
		[MIG_PHASE_DST_RECEIVING] = {MIG_STATUS_FAILED, false, false},
		[MIG_PHASE_DST_LOADED] = {MIG_STATUS_FAILED, false, false},
		/* The guest is ours: run it. */
		[MIG_PHASE_DST_COMMITTED] = {MIG_STATUS_COMPLETED, true, false},
		[MIG_PHASE_DST_RUNNING] = {MIG_STATUS_COMPLETED, false, false},
		/*
		 * Postcopy: the guest belongs to the destination, which still
		 * needs pages from the source's RAM.  The source's guest stays
		 * paused (the operator decides, as after a precopy commit); the
		 * destination's runs until it touches a page that can no
		 * longer come.
		 */
		[MIG_PHASE_SRC_POSTCOPY] = {MIG_STATUS_UNKNOWN, false, false},
		[MIG_PHASE_DST_PC_LOADED] = {MIG_STATUS_FAILED, false, false},
		[MIG_PHASE_DST_POSTCOPY] = {MIG_STATUS_FAILED, true, false},
	};
	struct mig_give_up g = {.status = MIG_STATUS_FAILED};

	if ((unsigned int)phase < sizeof(table) / sizeof(table[0]))
		g = table[phase];
	/* A source that set up dirty logging before it recorded a phase. */
	if (role == MIG_ROLE_SOURCE && g.status == MIG_STATUS_FAILED)
		g.stop_logging = true;
	return g;
}

int mig_record_abandon(struct shm_ctl *ctl, const char *reason, struct mig_give_up *todo)
{
	struct mig_record *rec = shm_ctl_session(ctl);
	uint32_t role, status, phase;
	int ret;

	memset(todo, 0, sizeof(*todo));
	if (!rec || ctl->hdr->session_size < sizeof(*rec))
		return -EINVAL;
	/* Only the migrator initialises the record: none written, no session to end. */
	if (rec->magic != MIG_RECORD_MAGIC || rec->version != MIG_RECORD_VERSION)
		return 0;
	ret = mig_record_lock(rec);
	if (ret)
		return ret;
	/*
	 * The migrator, less privileged than the launcher, wrote these: each is
	 * read once, checked, and only the checked copy decides what the
	 * launcher asks of vcpu-proc.
	 */
	role = __atomic_load_n(&rec->role, __ATOMIC_RELAXED);
	status = __atomic_load_n(&rec->status, __ATOMIC_RELAXED);
	phase = __atomic_load_n(&rec->phase, __ATOMIC_RELAXED);
	if (role > MIG_ROLE_DEST || status > MIG_STATUS_LAST || phase > MIG_PHASE_LAST) {
		mig_record_unlock(rec);
		log_err("session record: role %u, status %u, phase %u: not a record the migrator "
			"writes; left alone",
			role, status, phase);
		return -EPROTO;
	}
	if (status != MIG_STATUS_SETUP && status != MIG_STATUS_ACTIVE &&
	    status != MIG_STATUS_DEVICE && status != MIG_STATUS_CANCELLING &&
	    status != MIG_STATUS_POSTCOPY_ACTIVE && status != MIG_STATUS_POSTCOPY_PAUSED &&
	    phase != MIG_PHASE_DST_LISTENING) {
		mig_record_unlock(rec);
		return 0;
	}
	*todo = mig_record_give_up(phase, role);
	rec->status = todo->status;
	snprintf(rec->error_desc, sizeof(rec->error_desc), "%s", reason);
	rec->phase = MIG_PHASE_NONE;
	__atomic_store_n(&rec->receivedmap_live, 0u, __ATOMIC_RELEASE); /* nobody writes it now */
	mig_record_unlock(rec);
	return 1;
}
