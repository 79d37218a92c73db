/*
 * Google's own gcloud against the emulator: a Spot VM created with labels,
 * metadata from a file, an image family, a disk size and tags; listed
 * plainly, by label, by name and over several zones (a batch); described;
 * its labels, tags and metadata changed; its serial console read; stopped,
 * started, suspended and resumed; operations, zones, regions, machine types,
 * firewall rules, the project, images and disks; several deleted at once,
 * and nothing left. Each step asserts what gcloud printed.
 *
 * Set up as docs/emulator.md says (what `spillway emulator --print-env`
 * exports). Skipped, saying why, where gcloud is not installed.
 */
#include <regex.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"
#include "util/jx.h"
#include "util/str.h"
#include "util/xmalloc.h"

#define ZONE  "us-central1-a"
#define ZONE2 "us-central1-b"

static struct emu emu;
static char *env[12];
static char *account; /* the service account's email: what operations name as their user */

static int
start(void **state)
{
	const char *args[] = {"--boot-ms", "300", "--stop-ms", "200", NULL};
	char *key;
	json_t *k;
	int n = 0;

	emu_start(&emu, args);
	env[n++] = xasprintf("CLOUDSDK_CONFIG=%s/gcloud", emu.dir);
	env[n++] = xasprintf("CLOUDSDK_API_ENDPOINT_OVERRIDES_COMPUTE=%s/compute/v1/", emu.url);
	env[n++] = xasprintf("CLOUDSDK_AUTH_TOKEN_HOST=%s/token", emu.url);
	env[n++] = xasprintf("CLOUDSDK_AUTH_CREDENTIAL_FILE_OVERRIDE=%s", emu.creds);
	env[n++] = xstrdup("CLOUDSDK_CORE_PROJECT=spillway-emulator");
	env[n++] = xstrdup("CLOUDSDK_CORE_DISABLE_PROMPTS=1");
	env[n++] = xstrdup("CLOUDSDK_CORE_DISABLE_USAGE_REPORTING=true");
	env[n++] = xstrdup("CLOUDSDK_COMPONENT_MANAGER_DISABLE_UPDATE_CHECK=true");
	env[n] = NULL;
	key = read_text(emu.creds);
	assert_int_equal(jx_parse(key, strlen(key), &k, NULL), 0);
	account = xstrdup(jx_str(k, "client_email"));
	json_decref(k);
	free(key);
	return 0;
}

static int
stop(void **state)
{
	emu_stop(&emu);
	for (int i = 0; env[i] != NULL; i++)
		free(env[i]);
	free(account);
	return 0;
}

/* `gcloud compute ARGS` (NULL-terminated) with the emulator's set-up and extra (may be NULL). */
static void
run_gcloud(struct cmd_run *r, const char *extra, const char *const *args)
{
	const char *argv[48] = {"gcloud", "compute"}, *e[16];
	int n = 2, m = 0;

	for (; *args != NULL && n < 47; args++)
		argv[n++] = *args;
	argv[n] = NULL;
	for (int i = 0; env[i] != NULL; i++)
		e[m++] = env[i];
	e[m++] = extra;
	e[m] = NULL;
	run_program(r, argv, e);
}

/* The arguments of a call, NULL-terminated, with --format=json when json is said. */
static void
collect(const char **args, const char *first, va_list ap, bool json)
{
	int n = 0;

	for (const char *a = first; a != NULL && n < 40; a = va_arg(ap, const char *))
		args[n++] = a;
	if (json)
		args[n++] = "--format=json";
	args[n] = NULL;
}

/* What gcloud printed for args; it must have succeeded. */
static char *
succeeded(const char **args)
{
	struct cmd_run r;

	run_gcloud(&r, NULL, args);
	if (r.status != 0)
		fail_msg("gcloud compute %s %s: exit %d\n%s%s", args[0], args[1], r.status, r.out,
		    r.err);
	free(r.err);
	return r.out;
}

/* What gcloud printed; it must have succeeded. */
static char *__attribute__((sentinel)) gcloud(const char *first, ...)
{
	const char *args[44];
	va_list ap;

	va_start(ap, first);
	collect(args, first, ap, false);
	va_end(ap);
	return succeeded(args);
}

/* The same with --format=json: what it printed, parsed. */
static json_t *__attribute__((sentinel)) gcloud_json(const char *first, ...)
{
	const char *args[44];
	json_t *v = NULL;
	char *cause = NULL, *out;
	va_list ap;

	va_start(ap, first);
	collect(args, first, ap, true);
	va_end(ap);
	out = succeeded(args);
	if (jx_parse(out, strlen(out), &v, &cause) != 0)
		fail_msg(
		    "gcloud compute %s %s printed no JSON (%s): %s", first, args[1], cause, out);
	free(out);
	return v;
}

/* The names of a listing, sorted and comma-separated. */
static char *
names(json_t *list)
{
	struct buf b = BUF_INIT(SIZE_MAX);
	json_t *it;
	size_t i;

	json_array_foreach (list, i, it)
		buf_printf(&b, "%s%s", i > 0 ? "," : "", jx_str(it, "name"));
	json_decref(list);
	return b.data != NULL ? buf_detach(&b, NULL) : xstrdup("");
}

static void
expect_names(json_t *list, const char *want)
{
	char *got = names(list);

	assert_string_equal(got, want);
	free(got);
}

static bool
has_item(const json_t *arr, const char *want)
{
	const json_t *it;
	size_t i;

	json_array_foreach (arr, i, it)
		if (json_is_string(it) && strcmp(json_string_value(it), want) == 0)
			return true;
	return false;
}

static void
matches(const char *s, const char *re)
{
	regex_t r;

	assert_int_equal(regcomp(&r, re, REG_EXTENDED | REG_NOSUB), 0);
	if (regexec(&r, s, 0, NULL, 0) != 0)
		fail_msg("'%s' does not match %s", s, re);
	regfree(&r);
}

static void
test_create(void **state)
{
	char *script = xasprintf("%s/startup.sh", emu.dir),
	     *from = xasprintf("startup-script=%s", script);
	FILE *f = fopen(script, "w");
	json_t *made, *vm;
	size_t i;

	assert_non_null(f);
	fputs("#!/bin/sh\necho booted\n", f);
	fclose(f);
	made = gcloud_json("instances", "create", "vm-a", "vm-b", "--zone", ZONE, "--machine-type",
	    "e2-highmem-4", "--provisioning-model", "SPOT", "--instance-termination-action",
	    "DELETE", "--labels", "team=ml,app=x", "--metadata-from-file", from, "--metadata",
	    "spillway-components=vision", "--image-family", "debian-12", "--image-project",
	    "debian-cloud", "--boot-disk-size", "20GB", "--tags", "web,spillway-backend", NULL);
	assert_int_equal(json_array_size(made), 2);
	json_array_foreach (made, i, vm) {
		expect_schema("Instance", vm);
		assert_string_equal(jx_str(vm, "status"), "RUNNING");
		assert_true(str_suffix(
		    jx_str(vm, "machineType"), "/zones/" ZONE "/machineTypes/e2-highmem-4"));
		assert_string_equal(jx_str(vm, "scheduling.provisioningModel"), "SPOT");
		assert_string_equal(jx_str(vm, "scheduling.instanceTerminationAction"), "DELETE");
		assert_string_equal(jx_str(vm, "labels.team"), "ml");
		assert_string_equal(jx_str(vm, "disks.0.diskSizeGb"), "20");
		assert_int_equal(json_array_size(jx_get(vm, "tags.items")), 2);
		assert_true(has_item(jx_get(vm, "tags.items"), "web"));
		assert_true(has_item(jx_get(vm, "tags.items"), "spillway-backend"));
		assert_string_equal(jx_str(vm, "metadata.items.0.key"), "spillway-components");
		assert_string_equal(
		    jx_str(vm, "metadata.items.1.value"), "#!/bin/sh\necho booted\n");
		/* Google's fields: links on www.googleapis.com, 19-digit ids, a real time. */
		assert_true(
		    str_prefix(jx_str(vm, "selfLink"), "https://www.googleapis.com/compute/v1/"));
		matches(jx_str(vm, "id"), "^[1-9][0-9]{18}$");
		matches(jx_str(vm, "creationTimestamp"), "^20[2-9][0-9]-");
	}
	assert_string_not_equal(
	    jx_str(json_array_get(made, 0), "id"), jx_str(json_array_get(made, 1), "id"));
	json_decref(made);
	json_decref(gcloud_json("instances", "create", "vm-c", "--zone", ZONE2, "--machine-type",
	    "e2-small", "--image-family", "debian-12", "--image-project", "debian-cloud", NULL));
	free(script);
	free(from);
}

static void
test_list(void **state)
{
	char *out;

	expect_names(gcloud_json("instances", "list", NULL), "vm-a,vm-b,vm-c");
	expect_names(
	    gcloud_json("instances", "list", "--filter=labels.team=ml", NULL), "vm-a,vm-b");
	expect_names(gcloud_json("instances", "list", "--filter=name=vm-b", NULL), "vm-b");
	expect_names(
	    gcloud_json("instances", "list", "--filter=name~^vm-[ac]$", NULL), "vm-a,vm-c");
	/* Several zones: one request of several parts (the batch endpoint). */
	expect_names(
	    gcloud_json("instances", "list", "--zones", ZONE "," ZONE2, NULL), "vm-a,vm-b,vm-c");
	expect_names(gcloud_json("instances", "list", "--zones", ZONE2, NULL), "vm-c");
	/* The table a user reads: the Spot VM, its zone, RUNNING. */
	out = gcloud("instances", "list", "--filter=name=vm-a", NULL);
	matches(
	    out, "vm-a +" ZONE " +e2-highmem-4 +true +10\\.128\\.[0-9.]+ +127\\.[0-9.]+ +RUNNING");
	free(out);
}

static void
test_describe_and_change(void **state)
{
	json_t *vm;
	const char *fp;
	char *out;

	vm = gcloud_json("instances", "describe", "vm-a", "--zone", ZONE, NULL);
	fp = jx_str(vm, "labelFingerprint");
	assert_non_null(fp);
	assert_non_null(jx_str(vm, "tags.fingerprint"));
	json_decref(vm);
	out =
	    gcloud("instances", "add-labels", "vm-a", "--zone", ZONE, "--labels", "env=dev", NULL);
	free(out);
	out = gcloud("instances", "remove-labels", "vm-a", "--zone", ZONE, "--labels", "app", NULL);
	free(out);
	out = gcloud("instances", "add-tags", "vm-a", "--zone", ZONE, "--tags", "extra", NULL);
	free(out);
	out = gcloud(
	    "instances", "add-metadata", "vm-a", "--zone", ZONE, "--metadata", "foo=bar", NULL);
	free(out);
	vm = gcloud_json("instances", "describe", "vm-a", "--zone", ZONE, NULL);
	assert_string_equal(jx_str(vm, "labels.env"), "dev");
	assert_string_equal(jx_str(vm, "labels.team"), "ml");
	assert_null(jx_get(vm, "labels.app"));
	assert_true(has_item(jx_get(vm, "tags.items"), "extra"));
	assert_int_equal(json_array_size(jx_get(vm, "tags.items")), 3);
	assert_string_equal(jx_str(vm, "metadata.items.0.key"), "foo");
	assert_string_equal(jx_str(vm, "metadata.items.0.value"), "bar");
	assert_int_equal(json_array_size(jx_get(vm, "metadata.items")), 3);
	json_decref(vm);
	/* An instance with no labels has Google's empty-set fingerprint. */
	vm = gcloud_json("instances", "describe", "vm-c", "--zone", ZONE2, NULL);
	assert_string_equal(jx_str(vm, "labelFingerprint"), "42WmSpB8rSM=");
	json_decref(vm);
}

static void
test_serial_port(void **state)
{
	char *out = gcloud("instances", "get-serial-port-output", "vm-a", "--zone", ZONE, NULL);

	assert_non_null(strstr(out, "Booting from Hard Disk"));
	assert_non_null(strstr(out, "vm-a google_metadata_script_runner"));
	assert_non_null(strstr(out, "Found startup-script in metadata."));
	free(out);
}

static const char *
status_of(const char *name, const char *zone)
{
	static char status[32];
	json_t *vm = gcloud_json("instances", "describe", name, "--zone", zone, NULL);

	snprintf(status, sizeof status, "%s", jx_str(vm, "status"));
	json_decref(vm);
	return status;
}

static void
test_power(void **state)
{
	free(gcloud("instances", "stop", "vm-a", "--zone", ZONE, NULL));
	assert_string_equal(status_of("vm-a", ZONE), "TERMINATED");
	free(gcloud("instances", "start", "vm-a", "--zone", ZONE, NULL));
	assert_string_equal(status_of("vm-a", ZONE), "RUNNING");
	free(gcloud("instances", "suspend", "vm-b", "--zone", ZONE, NULL));
	assert_string_equal(status_of("vm-b", ZONE), "SUSPENDED");
	free(gcloud("instances", "resume", "vm-b", "--zone", ZONE, NULL));
	assert_string_equal(status_of("vm-b", ZONE), "RUNNING");
}

static void
test_operations(void **state)
{
	json_t *ops = gcloud_json("operations", "list", NULL), *op;
	const char *want[] = {
	    "insert", "setLabels", "setTags", "setMetadata", "stop", "start", "suspend", "resume"};
	size_t i;

	assert_true(json_array_size(ops) >= 10);
	json_array_foreach (ops, i, op) {
		matches(jx_str(op, "name"),
		    "^operation-[0-9]{13}-[0-9a-f]{13}-[0-9a-f]{8}-[0-9a-f]{8}$");
		assert_string_equal(jx_str(op, "user"), account);
		assert_string_equal(jx_str(op, "status"), "DONE");
	}
	for (size_t w = 0; w < sizeof want / sizeof want[0]; w++) {
		bool seen = false;

		json_array_foreach (ops, i, op)
			seen |= strcmp(jx_str(op, "operationType"), want[w]) == 0;
		if (!seen)
			fail_msg("no %s operation listed", want[w]);
	}
	json_decref(ops);
	/* gcloud sends this filter to the server, in RE2 (".*\bsuspend\b.*"). */
	ops = gcloud_json("operations", "list", "--filter=operationType=suspend", NULL);
	assert_int_equal(json_array_size(ops), 1);
	assert_true(str_suffix(jx_str(json_array_get(ops, 0), "targetLink"), "/instances/vm-b"));
	json_decref(ops);
}

static void
test_places_and_types(void **state)
{
	json_t *v;

	expect_names(
	    gcloud_json("zones", "list", NULL), "us-central1-a,us-central1-b,us-central1-c");
	v = gcloud_json("regions", "list", NULL);
	assert_int_equal(json_array_size(v), 1);
	assert_string_equal(jx_str(json_array_get(v, 0), "name"), "us-central1");
	assert_string_equal(jx_str(json_array_get(v, 0), "quotas.0.metric"), "CPUS");
	json_decref(v);
	v = gcloud_json(
	    "machine-types", "list", "--zones", ZONE, "--filter=name=e2-highmem-4", NULL);
	assert_int_equal(json_array_size(v), 1);
	assert_int_equal(json_integer_value(jx_get(json_array_get(v, 0), "memoryMb")), 32768);
	assert_int_equal(json_integer_value(jx_get(json_array_get(v, 0), "guestCpus")), 4);
	json_decref(v);
}

static void
test_firewalls(void **state)
{
	json_t *v;

	free(gcloud("firewall-rules", "create", "allow-web", "--allow", "tcp:80,tcp:443",
	    "--source-ranges", "10.0.0.0/8", "--target-tags", "web", NULL));
	v = gcloud_json("firewall-rules", "describe", "allow-web", NULL);
	expect_schema("Firewall", v);
	assert_string_equal(jx_str(v, "network"),
	    "https://www.googleapis.com/compute/v1/projects/spillway-emulator/global/networks/default");
	assert_string_equal(jx_str(v, "sourceRanges.0"), "10.0.0.0/8");
	assert_string_equal(jx_str(v, "allowed.1.ports.0"), "443");
	assert_string_equal(jx_str(v, "direction"), "INGRESS");
	matches(jx_str(v, "id"), "^[1-9][0-9]{18}$");
	json_decref(v);
	free(gcloud("firewall-rules", "update", "allow-web", "--allow", "tcp:8080", NULL));
	v = gcloud_json("firewall-rules", "describe", "allow-web", NULL);
	assert_string_equal(jx_str(v, "allowed.0.ports.0"), "8080");
	assert_null(jx_get(v, "allowed.1"));
	json_decref(v);
	expect_names(gcloud_json("firewall-rules", "list", NULL), "allow-web,default-allow-ssh");
	free(gcloud("firewall-rules", "delete", "allow-web", NULL));
	expect_names(gcloud_json("firewall-rules", "list", NULL), "default-allow-ssh");
}

static void
test_project_images_disks(void **state)
{
	json_t *v = gcloud_json("project-info", "describe", NULL);

	expect_schema("Project", v);
	assert_string_equal(jx_str(v, "name"), "spillway-emulator");
	assert_true(str_suffix(
	    jx_str(v, "defaultServiceAccount"), "-compute@developer.gserviceaccount.com"));
	assert_string_equal(jx_str(v, "commonInstanceMetadata.fingerprint"), "42WmSpB8rSM=");
	json_decref(v);
	v = gcloud_json(
	    "images", "describe-from-family", "debian-12", "--project", "debian-cloud", NULL);
	expect_schema("Image", v);
	assert_string_equal(jx_str(v, "family"), "debian-12");
	assert_true(str_prefix(jx_str(v, "name"), "debian-12-bookworm-v"));
	json_decref(v);
	v = gcloud_json("disks", "list", NULL);
	assert_int_equal(json_array_size(v), 3);
	assert_string_equal(jx_str(json_array_get(v, 0), "name"), "vm-a");
	assert_string_equal(jx_str(json_array_get(v, 0), "sizeGb"), "20");
	assert_true(str_suffix(jx_str(json_array_get(v, 0), "users.0"), "/instances/vm-a"));
	assert_true(strstr(jx_str(json_array_get(v, 0), "sourceImage"),
	                "/debian-cloud/global/images/debian-12-") != NULL);
	json_decref(v);
}

/* An image baked from a VM's disk (what `spillway image bake` does), and a VM booted from its
 * family. */
static void
test_image_from_disk(void **state)
{
	json_t *v;

	free(gcloud("images", "create", "baked", "--source-disk", "vm-c", "--source-disk-zone",
	    ZONE2, "--family", "spillway-backend", "--force", NULL));
	v = gcloud_json("images", "describe-from-family", "spillway-backend", NULL);
	expect_schema("Image", v);
	assert_string_equal(jx_str(v, "name"), "baked");
	assert_string_equal(jx_str(v, "status"), "READY");
	assert_true(str_suffix(jx_str(v, "sourceDisk"), "/zones/" ZONE2 "/disks/vm-c"));
	json_decref(v);
	json_decref(gcloud_json("instances", "create", "vm-d", "--zone", ZONE2, "--machine-type",
	    "e2-small", "--image-family", "spillway-backend", NULL));
	v = gcloud_json("disks", "describe", "vm-d", "--zone", ZONE2, NULL);
	assert_string_equal(jx_str(v, "sourceImage"),
	    "https://www.googleapis.com/compute/v1/projects/spillway-emulator/global/images/baked");
	json_decref(v);
	free(gcloud("instances", "delete", "vm-d", "--zone", ZONE2, NULL));
	free(gcloud("images", "delete", "baked", NULL));
	expect_names(gcloud_json("images", "list", "--no-standard-images", NULL), "");
}

/* A user's own credentials (its authorized_user's token): operations name the user. */
static void
test_user_token(void **state)
{
	struct cmd_run r;
	char *tok = NULL, *extra;
	json_t *v;

	{
		char *creds = read_text(emu.user_creds), *body,
		     *url = xasprintf("%s/token", emu.url);
		json_t *c;
		struct resp rp;

		assert_int_equal(jx_parse(creds, strlen(creds), &c, NULL), 0);
		body = xasprintf(
		    "grant_type=refresh_token&client_id=%s&client_secret=%s&refresh_token=%s",
		    jx_str(c, "client_id"), jx_str(c, "client_secret"), jx_str(c, "refresh_token"));
		http_call(&rp, "POST", url, NULL, body, NULL, NULL);
		assert_int_equal(rp.status, 200);
		tok = xstrdup(jx_str(rp.json, "access_token"));
		resp_free(&rp);
		json_decref(c);
		free(creds);
		free(body);
		free(url);
	}
	extra = xasprintf("CLOUDSDK_AUTH_ACCESS_TOKEN=%s", tok);
	{
		const char *args[] = {"instances", "add-labels", "vm-c", "--zone", ZONE2,
		    "--labels", "by=user", NULL};

		run_gcloud(&r, extra, args);
		assert_int_equal(r.status, 0);
		cmd_run_free(&r);
	}
	v = gcloud_json("operations", "list", "--filter=operationType=setLabels", NULL);
	{
		json_t *op;
		size_t i;
		bool by_user = false;

		json_array_foreach (v, i, op)
			by_user |= str_suffix(jx_str(op, "targetLink"), "/vm-c") &&
			    strcmp(jx_str(op, "user"), "developer@spillway-emulator.example") == 0;
		assert_true(by_user);
	}
	json_decref(v);
	free(extra);
	free(tok);
}

static void
test_delete_all(void **state)
{
	const char *list[] = {"instances", "list", NULL};
	struct cmd_run r;

	/* Two at once: a batch of deletes. */
	free(gcloud("instances", "delete", "vm-a", "vm-b", "--zone", ZONE, NULL));
	free(gcloud("instances", "delete", "vm-c", "--zone", ZONE2, NULL));
	run_gcloud(&r, NULL, list);
	assert_int_equal(r.status, 0);
	assert_string_equal(r.out, "");
	assert_non_null(strstr(r.err, "Listed 0 items."));
	assert_null(strstr(r.err, "WARNING"));
	cmd_run_free(&r);
	/* Their boot disks went with them (autoDelete). */
	expect_names(gcloud_json("disks", "list", NULL), "");
}

/* docs/emulator.md's two lines, as a user types them in a shell. */
static void
test_print_env(void **state)
{
	char *script = xasprintf("eval \"$('%s' emulator --detach --print-env)\" && "
	                         "gcloud compute zones list --format='value(name)'; status=$?; "
	                         "kill \"$SPILLWAY_EMULATOR_PID\"; exit $status",
	    getenv("SPILLWAY_BIN"));
	const char *argv[] = {"sh", "-c", script, NULL};
	struct cmd_run r;

	run_program(&r, argv, NULL);
	if (r.status != 0)
		fail_msg("sh: exit %d\n%s%s", r.status, r.out, r.err);
	assert_string_equal(r.out, "us-central1-a\nus-central1-b\nus-central1-c\n");
	cmd_run_free(&r);
	free(script);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_create),
	    cmocka_unit_test(test_list),
	    cmocka_unit_test(test_describe_and_change),
	    cmocka_unit_test(test_serial_port),
	    cmocka_unit_test(test_power),
	    cmocka_unit_test(test_operations),
	    cmocka_unit_test(test_places_and_types),
	    cmocka_unit_test(test_firewalls),
	    cmocka_unit_test(test_project_images_disks),
	    cmocka_unit_test(test_image_from_disk),
	    cmocka_unit_test(test_user_token),
	    cmocka_unit_test(test_delete_all),
	    cmocka_unit_test(test_print_env),
	};
	struct cmd_run r;
	const char *version[] = {"gcloud", "--version", NULL};

	run_program(&r, version, NULL);
	if (r.status != 0) {
		printf("skipped: Google's gcloud is not installed (it ran with status %d)\n",
		    r.status);
		cmd_run_free(&r);
		return 77;
	}
	cmd_run_free(&r);
	return cmocka_run_group_tests(tests, start, stop);
}
