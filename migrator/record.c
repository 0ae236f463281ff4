/* SPDX-License-Identifier: GPL-2.0-only */
/* The session record in the ctl segment's session area (see mig-internal.h). */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "log/log.h"
#include "migrator/mig-internal.h"

_Static_assert(sizeof(struct mig_record) <= SHM_SESSION_SIZE, "session area too small");

int mig_record_open(struct mig_record **out, struct shm_ctl *ctl)
{
	struct mig_record *rec = shm_ctl_session(ctl);
	int ret;

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
	}
	*out = rec;
	return 0;
}

int mig_record_lock(struct mig_record *rec)
{
	int ret = shm_lock_acquire(&rec->lock);

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

int mig_record_abandon(struct shm_ctl *ctl, const char *reason, struct mig_abandon *todo)
{
	struct mig_record *rec;
	int ret;

	memset(todo, 0, sizeof(*todo));
	ret = mig_record_open(&rec, ctl);
	if (!ret)
		ret = mig_record_lock(rec);
	if (ret)
		return ret;
	if (rec->status != MIG_STATUS_SETUP && rec->status != MIG_STATUS_ACTIVE &&
	    rec->status != MIG_STATUS_DEVICE && rec->status != MIG_STATUS_CANCELLING &&
	    rec->phase != MIG_PHASE_DST_LISTENING) {
		mig_record_unlock(rec);
		return 0;
	}
	switch (rec->phase) {
	case MIG_PHASE_SRC_COMMITTED:
		/* The destination may run it: only the operator can say. */
		rec->status = MIG_STATUS_UNKNOWN;
		break;
	case MIG_PHASE_DST_COMMITTED:
		/* The guest is ours: run it.  Then as RUNNING. */
		todo->resume = true;
		/* fallthrough */
	case MIG_PHASE_DST_RUNNING:
		rec->status = MIG_STATUS_COMPLETED;
		break;
	default:
		todo->resume = rec->phase == MIG_PHASE_SRC_PAUSED;
		todo->stop_logging = rec->role == MIG_ROLE_SOURCE;
		rec->status = MIG_STATUS_FAILED;
		break;
	}
	snprintf(rec->error_desc, sizeof(rec->error_desc), "%s", reason);
	rec->phase = MIG_PHASE_NONE;
	__atomic_store_n(&rec->receivedmap_live, 0u, __ATOMIC_RELEASE); /* nobody writes it now */
	mig_record_unlock(rec);
	return 1;
}
