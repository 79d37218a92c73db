/* What a health answer says (health.h). */
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <strings.h>

#include "util/jx.h"
#include "vm/health.h"

/* Words health endpoints answer when they cannot serve (Spring, k8s probes, RFC drafts). */
static const char *const failing[] = {"fail", "failed", "failing", "failure", "error", "down",
    "unhealthy", "starting", "stopping", "initializing", "loading", "unavailable", "out_of_service",
    "not_ready", "not ready", "critical", "dead", "broken"};

static bool
failing_word(const char *s)
{
	for (size_t i = 0; i < sizeof failing / sizeof failing[0]; i++)
		if (strcasecmp(s, failing[i]) == 0)
			return true;
	return false;
}

void
health_read(long status, const char *body, size_t len, struct health_answer *out)
{
	json_t *j = NULL, *idle;
	const char *word = NULL;

	out->verdict = HEALTH_BAD;
	out->idle_s = out->boot_s = -1;
	out->why[0] = out->step[0] = out->installed[0] = '\0';
	if (status > 0 && len > 0 && jx_parse(body, len, &j, NULL) == 0 && json_is_object(j)) {
		word = json_string_value(json_object_get(j, "status"));
		idle = json_object_get(j, "idle_seconds");
		if (json_is_integer(idle) && json_integer_value(idle) >= 0)
			out->idle_s = json_integer_value(idle);
		if (json_is_string(jx_get(j, "boot.step")))
			snprintf(out->step, sizeof out->step, "%s", jx_str(j, "boot.step"));
		if (json_is_string(json_object_get(j, "installed")))
			snprintf(
			    out->installed, sizeof out->installed, "%s", jx_str(j, "installed"));
		if (json_is_integer(jx_get(j, "boot.updated")))
			out->boot_s = json_integer_value(jx_get(j, "boot.updated"));
		if ((word != NULL && strcasecmp(word, "preempted") == 0) ||
		    json_is_true(json_object_get(j, "preempted"))) {
			out->verdict = HEALTH_PREEMPTED;
			goto out;
		}
	}
	if (status < 200 || status > 299)
		snprintf(out->why, sizeof out->why, "it answered HTTP %ld", status);
	else if (word != NULL && failing_word(word))
		snprintf(out->why, sizeof out->why, "it answered status \"%.60s\"", word);
	else
		out->verdict = HEALTH_OK;
out:
	json_decref(j);
}
