/*
 * Baking (docs/images.md): a VM whose purpose is an image. It is created
 * under the money rules like any VM, with the startup script in bake mode
 * (startup_bake). Once its agent says the install is done and holds what
 * was asked (health.h: step "baked", installed = the image's install hash),
 * it is IMAGING: stopped, its boot disk made an image of the family, the
 * image recorded READY with its size and storage price, and the VM deleted.
 *
 * Each step follows from what is known, never from what was done in this
 * process: the image READY in the ledger means the VM goes; a VM listed as
 * stopped means the image is asked (again, with its requestId from the
 * ledger: never a second image); else the stop. So a pass, or a restart,
 * takes a bake up where it is. A bake that cannot finish deletes its image
 * (it may have been made) and its VM, and says why in the image's record.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ledger/pricing.h"
#include "util/log.h"
#include "util/str.h"
#include "util/uuid.h"
#include "util/xmalloc.h"
#include "vm/health.h"
#include "vm/internal.h"
#include "vm/startup.h"

#define GIB (1024.0 * 1024 * 1024)
/* A stop and an image take minutes (Google: an image of a 10 GB disk, about 5). */
#define IMAGING_LIMIT_MIN 30
#define IMAGING_LIMIT_MS  (IMAGING_LIMIT_MIN * 60000)
#define STR_(x)           #x
#define STR(x)            STR_(x)

/* Its image is made: the VM goes. */
static void
baked(struct mvm *v, const struct image_record *im)
{
	char why[sizeof v->rec.end_reason];

	snprintf(why, sizeof why, "baked: image %s made", im->name);
	terminate(v, why, VM_TERMINATED);
}

/* Its image's record: read from the ledger the first time (after a restart too). */
static struct image_record *
image_of(struct mvm *v)
{
	if (v->image == NULL) {
		struct image_record im;

		if (ledger_image_of(v->m->o.ledger, v->rec.name, &im) != 0)
			return NULL;
		v->image = xmalloc(sizeof *v->image);
		*v->image = im;
	}
	return v->image;
}

static void
save_image(struct mvm *v)
{
	if (ledger_image_save(v->m->o.ledger, v->image) != 0)
		log_warnx("%s: the ledger cannot record image %s: %s", v->rec.name, v->image->name,
		    ledger_error(v->m->o.ledger));
}

/*
 * An image's delete in flight: the manager's (m->image_deletes) until its
 * answer, so that none is lost, or leaked, if the manager goes first.
 */
struct image_delete {
	struct manager *m;
	char name[64];
	struct image_delete *next;
};

static void
delete_done(struct image_delete *x)
{
	struct image_delete **p = &x->m->image_deletes;

	while (*p != x)
		p = &(*p)->next;
	*p = x->next;
	free(x);
}

static void
on_image_deleted(const struct cloud_error *e, const struct cloud_op *op, void *arg)
{
	struct image_delete *x = arg;
	struct manager *m = x->m;
	struct image_record im;

	if (e->code != CLOUD_OK && e->code != CLOUD_NOT_FOUND) {
		char *t = cloud_error_text(e);

		log_warnx("image %s: the delete failed: %s; spillway image delete %s tries again",
		    x->name, t, x->name);
		manager_note(m, "-", "image-kept", x->name);
		free(t);
	} else if (e->code == CLOUD_OK && op->name != NULL && !op->done &&
	    m->o.cloud->ops->wait(m->o.cloud, NULL, op->name, now_ms(m) + CALL_DEADLINE_MS,
	        on_image_deleted, x) == 0) {
		return;
	} else if (ledger_image_get(m->o.ledger, x->name, &im) == 0) {
		/* A failed bake's stays FAILED, with why; a READY one is DELETED, its storage over.
		 */
		if (im.state == IMAGE_READY) {
			im.state = IMAGE_DELETED;
			im.deleted_ms = now_ms(m);
			if (ledger_image_save(m->o.ledger, &im) != 0)
				log_warnx("image %s: deleted, but the ledger cannot say so: %s",
				    x->name, ledger_error(m->o.ledger));
		}
		manager_note(m, "-", "image-deleted", x->name);
		log_info("image %s: deleted", x->name);
	}
	delete_done(x);
}

/* Delete an image (its requestId derived from seed): 0, or -errno when it cannot be sent. */
static int
send_image_delete(struct manager *m, const char *name, const char *seed)
{
	struct image_delete *x = xcalloc(1, sizeof *x);
	char rid[UUID_LEN];

	x->m = m;
	snprintf(x->name, sizeof x->name, "%s", name);
	x->next = m->image_deletes;
	m->image_deletes = x;
	uuid_derived(seed, "delete", rid);
	m->counts.api_calls++;
	if (m->o.cloud->ops->image_delete == NULL ||
	    m->o.cloud->ops->image_delete(
	        m->o.cloud, name, rid, now_ms(m) + CALL_DEADLINE_MS, on_image_deleted, x) != 0) {
		log_warnx("image %s: its delete could not be sent", name);
		delete_done(x);
		return -EIO;
	}
	return 0;
}

void
bake_forget(struct manager *m)
{
	while (m->image_deletes != NULL)
		delete_done(m->image_deletes);
}

/*
 * Its image will not be made: recorded FAILED, and deleted in case the cloud
 * made it all the same (an images.insert whose answer was lost, say).
 */
static void
drop_image(struct mvm *v, const char *why)
{
	struct manager *m = v->m;
	struct image_record *im = image_of(v);

	if (im == NULL || im->state != IMAGE_BAKING)
		return;
	im->state = IMAGE_FAILED;
	snprintf(im->why, sizeof im->why, "%s", why);
	save_image(v);
	send_image_delete(m, im->name, im->request_id);
}

/* The bake cannot finish: its image (if it was made) and its VM go, and why is recorded. */
static void
bake_failed(struct mvm *v, const char *why)
{
	char reason[512];

	snprintf(reason, sizeof reason, "bake failed: %s", why);
	log_warnx("%s: %s", v->rec.name, reason);
	drop_image(v, why);
	terminate(v, reason, VM_TERMINATED);
}

/*
 * What its storage costs: its size as listed (the archive, else the disk's),
 * at the catalog's price for image storage ($0 when not known: said).
 */
static void
storage_of(struct manager *m, const struct cloud_image *listed, struct image_record *im)
{
	char *cause = NULL;

	im->size_gib = listed->archive_bytes > 0 ? (double)listed->archive_bytes / GIB
	                                         : (double)listed->disk_gb;
	if (m->o.catalog == NULL ||
	    price_image_storage(m->o.catalog, m->cfg->region, &im->per_gib_month, &cause) != 0)
		log_warnx("image %s: its storage is counted at $0: %s", im->name,
		    cause != NULL ? cause : "no price catalog");
	free(cause);
}

/* What the listing says of the image: its size, for its storage's cost. */
static void
on_images(const struct cloud_error *e, const struct cloud_image *list, size_t n, void *arg)
{
	struct mvm *v = arg;
	struct manager *m = v->m;
	struct image_record *im = image_of(v);

	v->busy = false;
	if (im == NULL)
		return;
	if (e->code != CLOUD_OK) {
		char *t = cloud_error_text(e);

		log_warnx("%s: cannot list the images: %s; asking again at the next pass",
		    v->rec.name, t);
		free(t);
		after_call(v);
		return;
	}
	for (size_t i = 0; i < n; i++)
		if (strcmp(list[i].name, im->name) == 0)
			storage_of(m, &list[i], im);
	im->state = IMAGE_READY;
	im->ready_ms = now_ms(m);
	save_image(v);
	records_event(m->records, v->rec.name, "image", im->name, now_ms(m));
	log_info("%s: image %s of family %s is READY (%.2f GiB, $%.4f a month)", v->rec.name,
	    im->name, im->family, im->size_gib, im->size_gib * im->per_gib_month);
	baked(v, im);
	after_call(v);
}

static void
on_imaged(const struct cloud_error *e, const struct cloud_op *op, void *arg)
{
	struct mvm *v = arg;
	struct manager *m = v->m;

	v->busy = false;
	if (waits_on(v, NULL, e, op, on_imaged))
		return;
	if (e->code == CLOUD_OK) {
		v->busy = true;
		m->counts.api_calls++;
		if (m->o.cloud->ops->images(m->o.cloud, "spillway-owner", m->o.owner,
		        now_ms(m) + CALL_DEADLINE_MS, on_images, v) != 0)
			v->busy = false;
	} else if (transient(e->code)) {
		char *t = cloud_error_text(e);

		log_warnx("%s: the image is not made yet (%s); asking again at the next pass",
		    v->rec.name, t);
		free(t);
	} else {
		char *t = cloud_error_text(e);

		bake_failed(v, t);
		free(t);
	}
	after_call(v);
}

/* The stopped VM's boot disk (Compute Engine names it after the VM) made an image. */
static void
make_image(struct mvm *v, struct image_record *im)
{
	struct manager *m = v->m;
	const struct cloud_kv labels[] = {{"managed-by", "spillway"},
	    {"spillway-owner", m->o.owner}, {"spillway-install", im->install_hash}};
	struct cloud_image_spec s = {.name = im->name,
	    .family = im->family,
	    .zone = v->rec.zone,
	    .disk = v->rec.name,
	    .labels = labels,
	    .nlabels = nitems(labels)};

	v->busy = true;
	m->counts.api_calls++;
	if (m->o.cloud->ops->image_create == NULL ||
	    m->o.cloud->ops->image_create(
	        m->o.cloud, &s, im->request_id, now_ms(m) + CALL_DEADLINE_MS, on_imaged, v) != 0) {
		v->busy = false;
		bake_failed(v, "the image could not be asked for");
	}
}

static void
on_stopped(const struct cloud_error *e, const struct cloud_op *op, void *arg)
{
	struct mvm *v = arg;

	v->busy = false;
	if (waits_on(v, v->rec.zone, e, op, on_stopped))
		return;
	if (e->code == CLOUD_OK && v->terminate_after == NULL && image_of(v) != NULL) {
		make_image(v, image_of(v));
	} else if (e->code != CLOUD_OK && !transient(e->code)) {
		char *t = cloud_error_text(e);

		bake_failed(v, t);
		free(t);
	} else if (e->code != CLOUD_OK) {
		log_warnx(
		    "%s: the stop did not finish; asking again at the next pass", v->rec.name);
	}
	after_call(v);
}

void
bake_step(struct mvm *v, const char *status)
{
	struct manager *m = v->m;
	struct image_record *im = image_of(v);
	char rid[UUID_LEN];

	if (v->busy || v->rec.state != VM_IMAGING || m->stopping)
		return;
	if (now_ms(m) - v->rec.state_ms > IMAGING_LIMIT_MS) {
		bake_failed(v, "the image was not made within " STR(IMAGING_LIMIT_MIN) " min");
	} else if (im == NULL) {
		bake_failed(v, "the ledger has no image for it");
	} else if (im->state == IMAGE_READY) {
		baked(v, im);
	} else if (im->state != IMAGE_BAKING) {
		bake_failed(v, im->why[0] ? im->why : "its image failed");
	} else if (str_eq(status, "TERMINATED")) {
		make_image(v, im);
	} else {
		/* A new requestId each time: a stop of a stopped VM is done at once. */
		uuid_v4(rid);
		v->busy = true;
		m->counts.api_calls++;
		if (m->o.cloud->ops->power == NULL ||
		    m->o.cloud->ops->power(m->o.cloud, v->rec.zone, v->rec.name, CLOUD_STOP, rid,
		        now_ms(m) + CALL_DEADLINE_MS, on_stopped, v) != 0) {
			v->busy = false;
			bake_failed(v, "the stop could not be sent");
		}
	}
}

void
bake_answer(struct mvm *v, const struct health_answer *h)
{
	struct image_record *im = image_of(v);

	if (v->rec.state != VM_BOOTING || strcmp(h->step, "baked") != 0)
		return;
	if (im == NULL || strcmp(h->installed, im->install_hash) != 0) {
		char why[160];

		snprintf(why, sizeof why, "its install holds %s, not the %s asked for",
		    h->installed[0] ? h->installed : "nothing",
		    im != NULL ? im->install_hash : "(unknown)");
		bake_failed(v, why);
		return;
	}
	set_state(v, VM_IMAGING, "installed: stopped, its disk made an image");
	bake_step(v, "RUNNING");
}

void
bake_ended(struct mvm *v)
{
	char why[sizeof v->rec.end_reason + 64];

	snprintf(why, sizeof why, "its VM ended before the image was made: %s", v->rec.end_reason);
	drop_image(v, why);
}

/*
 * The project's images under our owner label, and the ledger's: an image of
 * a bake that failed is deleted (nothing may leak), one the ledger does not
 * know is taken in as READY (a ledger made again), and one READY in the
 * ledger that is gone was deleted outside spillway: its storage ends.
 */
static void
on_swept(const struct cloud_error *e, const struct cloud_image *list, size_t n, void *arg)
{
	struct manager *m = arg;
	struct image_record *known = NULL, im;
	size_t nknown = 0;
	int64_t now = now_ms(m);

	m->sweeping = false;
	if (e->code != CLOUD_OK || ledger_images(m->o.ledger, false, &known, &nknown) != 0)
		return; /* the next start sweeps */
	for (size_t i = 0; i < n; i++) {
		int error = ledger_image_get(m->o.ledger, list[i].name, &im);

		if (error == 0 && (im.state == IMAGE_FAILED || im.state == IMAGE_DELETED)) {
			log_info("image %s: left by a bake that failed (%s): deleting it", im.name,
			    im.why);
			send_image_delete(m, im.name, im.request_id);
		} else if (error == -ENOENT && strcmp(list[i].status, "READY") == 0) {
			memset(&im, 0, sizeof im);
			snprintf(im.name, sizeof im.name, "%s", list[i].name);
			snprintf(im.family, sizeof im.family, "%s", list[i].family);
			snprintf(im.install_hash, sizeof im.install_hash, "%s",
			    or_default(
			        cloud_kv_get(list[i].labels, list[i].nlabels, "spillway-install"),
			        ""));
			snprintf(im.backend, sizeof im.backend, "unknown (found in the project)");
			im.state = IMAGE_READY;
			im.requested_ms = im.ready_ms =
			    list[i].created_ms > 0 ? list[i].created_ms : now;
			storage_of(m, &list[i], &im);
			log_info("image %s: ours by its label and unknown to the ledger: recorded",
			    im.name);
			ledger_image_save(m->o.ledger, &im);
		}
	}
	for (size_t i = 0; i < nknown; i++) {
		bool listed = false;

		for (size_t j = 0; j < n && !listed; j++)
			listed = strcmp(list[j].name, known[i].name) == 0;
		if (listed || known[i].state != IMAGE_READY)
			continue;
		known[i].state = IMAGE_DELETED;
		known[i].deleted_ms = now;
		snprintf(known[i].why, sizeof known[i].why, "deleted outside spillway");
		log_info("image %s: deleted outside spillway", known[i].name);
		ledger_image_save(m->o.ledger, &known[i]);
	}
	free(known);
}

void
bake_sweep(struct manager *m)
{
	if (m->o.passive || m->o.cloud->ops->images == NULL || m->sweeping)
		return;
	m->sweeping = true;
	m->counts.api_calls++;
	if (m->o.cloud->ops->images(m->o.cloud, "spillway-owner", m->o.owner,
	        now_ms(m) + CALL_DEADLINE_MS, on_swept, m) != 0)
		m->sweeping = false;
}

int
manager_image_delete(struct manager *m, const char *name, char *why, size_t whylen)
{
	struct image_record im;

	if (ledger_image_get(m->o.ledger, name, &im) != 0 || im.state == IMAGE_DELETED) {
		snprintf(why, whylen, "no image named '%s' (spillway image list shows them)", name);
		return -ENOENT;
	}
	if (im.state == IMAGE_BAKING) {
		snprintf(
		    why, whylen, "%s is being baked on %s: terminate that VM first", name, im.vm);
		return -EBUSY;
	}
	if (send_image_delete(m, name, im.request_id[0] ? im.request_id : im.name) != 0) {
		snprintf(why, whylen, "the delete of %s could not be sent", name);
		return -EIO;
	}
	return 0;
}

const char *
manager_boot_image(struct manager *m, char *buf, size_t size)
{
	const struct config *cfg = m->cfg;
	struct image_record *list = NULL;
	size_t n = 0;
	bool ready;

	if (strcmp(cfg->image, "baked") != 0)
		return cfg->image;
	if (ledger_images(m->o.ledger, false, &list, &n) != 0)
		n = 0;
	ready = image_newest(list, n, cfg->image_family) != NULL;
	free(list);
	if (!ready)
		return cfg->image_base;
	snprintf(buf, size, "global/images/family/%s", cfg->image_family);
	return buf;
}

/* "spillway-20261208-020345-ab12" gives "FAMILY-20261208-020345-ab12". */
static void
image_name(const char *family, const char *vm, char *out, size_t size)
{
	const char *stamp = str_prefix(vm, "spillway-") ? vm + strlen("spillway-") : vm;

	snprintf(out, size, "%s-%s", family, stamp);
}

int
manager_bake(struct manager *m, const char *family, char *name, size_t namelen, struct decision *d)
{
	const struct config *cfg = m->cfg;
	struct image_record im;
	struct mvm *v;
	int error;

	memset(d, 0, sizeof *d);
	for (v = m->vms; v != NULL; v = v->next)
		if (vm_bakes(&v->rec) && vm_state_alive(v->rec.state)) {
			decision_refuse(d, "bake", "a bake is under way on %s", v->rec.name);
			return -EBUSY;
		}
	if (cfg->backend_git[0] == '\0') {
		decision_refuse(d, "bake",
		    "backend.git is not set: there is nothing to install, and an image baked "
		    "now would be %s itself",
		    cfg->image_base);
		return -EINVAL;
	}
	if (!manager_by_hand(m, NULL, d))
		return -EAGAIN;
	if ((error = create_vm(m,
	         &(struct vm_intent){
	             .reason = "to bake an image", .confidence = 1, .purpose = "bake"},
	         name, namelen, d)) != 0)
		return error;
	v = find_vm(m, name);
	memset(&im, 0, sizeof im);
	image_name(family, name, im.name, sizeof im.name);
	snprintf(im.family, sizeof im.family, "%s", family);
	snprintf(im.vm, sizeof im.vm, "%s", name);
	config_install_hash(cfg, im.install_hash);
	snprintf(im.backend, sizeof im.backend, "%s at %s", cfg->backend_git, cfg->backend_ref);
	uuid_v4(im.request_id);
	im.state = IMAGE_BAKING;
	im.requested_ms = now_ms(m);
	v->image = xmalloc(sizeof *v->image);
	*v->image = im;
	if (ledger_image_save(m->o.ledger, &im) != 0) {
		char why[512];

		snprintf(why, sizeof why, "the ledger cannot record its image: %s",
		    ledger_error(m->o.ledger));
		decision_refuse(d, "ledger", "%s", why);
		terminate(v, why, VM_FAILED);
		return -EIO;
	}
	snprintf(
	    d->reason, sizeof d->reason, "image %s of family %s, on %s", im.name, family, name);
	return 0;
}
