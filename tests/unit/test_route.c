/* Where a route sends a new connection (route_choose), and addresses as written (addr.h). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "net/addr.h"
#include "route/route.h"

static struct route_choice
pick_copy(const struct route_vm_view *vms, size_t n, enum route_local copy, double wait_s)
{
	struct route_choice c;

	route_choose("vision", vms, n, copy, wait_s, &c);
	return c;
}

static struct route_choice
pick(const struct route_vm_view *vms, size_t n, bool local, double wait_s)
{
	return pick_copy(vms, n, local ? ROUTE_LOCAL_UP : ROUTE_LOCAL_NONE, wait_s);
}

static void
test_ready_vm_first(void **state)
{
	struct route_vm_view vms[] = {
	    {.name = "a", .state = VM_READY, .serves = true, .open = 3},
	    {.name = "b", .state = VM_READY, .serves = true, .open = 1},
	    {.name = "c", .state = VM_READY, .serves = false, .open = 0},
	    {.name = "d", .state = VM_DRAINING, .serves = true, .open = 0},
	    {.name = "e", .state = VM_UNHEALTHY, .serves = true, .open = 0},
	};
	struct route_choice c = pick(vms, 5, true, 0);

	/* The least loaded READY one that runs it, not draining: b. */
	assert_int_equal(c.to, ROUTE_TO_VM);
	assert_int_equal(c.vm, 1);
	assert_string_equal(c.why, "b is READY for vision");
	/* Ties go to the first. */
	vms[0].open = 1;
	assert_int_equal(pick(vms, 5, true, 0).vm, 0);
}

static void
test_local_wait_none(void **state)
{
	struct route_vm_view vms[] = {
	    {.name = "a", .state = VM_BOOTING, .serves = true},
	    {.name = "b", .state = VM_DRAINING, .serves = true},
	};
	struct route_choice c;

	/* Booting: the local copy serves meanwhile; no local copy: wait, if allowed. */
	c = pick(vms, 2, true, 30);
	assert_int_equal(c.to, ROUTE_TO_LOCAL);
	assert_string_equal(c.why, "no VM is READY for vision: its local copy serves");
	c = pick(vms, 2, false, 30);
	assert_int_equal(c.to, ROUTE_TO_WAIT);
	assert_non_null(strstr(c.why, "waiting up to 30 s"));
	c = pick(vms, 2, false, 0);
	assert_int_equal(c.to, ROUTE_TO_NONE);
	assert_non_null(strstr(c.why, "route.wait_s is 0"));
	/* A draining VM is not one on its way. */
	c = pick(vms + 1, 1, false, 30);
	assert_int_equal(c.to, ROUTE_TO_NONE);
	assert_string_equal(c.why, "no VM is READY for vision and it has no local copy");
	assert_int_equal(pick(NULL, 0, false, 30).to, ROUTE_TO_NONE);
	assert_string_equal(route_to_name(ROUTE_TO_WAIT), "wait");
}

/*
 * A local copy spillway runs: a READY VM first still; one that starts is
 * waited for (route.wait_s), one stopped is never tried.
 */
static void
test_local_copy_states(void **state)
{
	struct route_vm_view ready = {.name = "a", .state = VM_READY, .serves = true};
	struct route_vm_view draining = {.name = "b", .state = VM_DRAINING, .serves = true};
	struct route_vm_view booting = {.name = "c", .state = VM_BOOTING, .serves = true};
	struct route_choice c;

	assert_int_equal(pick_copy(&ready, 1, ROUTE_LOCAL_DOWN, 0).to, ROUTE_TO_VM);
	assert_int_equal(pick_copy(&ready, 1, ROUTE_LOCAL_STARTING, 0).to, ROUTE_TO_VM);
	/* Preempted while its copy starts: wait for the copy. */
	c = pick_copy(&draining, 1, ROUTE_LOCAL_STARTING, 20);
	assert_int_equal(c.to, ROUTE_TO_WAIT);
	assert_string_equal(
	    c.why, "no VM is READY for vision and its local copy starts: waiting up to 20 s");
	c = pick_copy(&draining, 1, ROUTE_LOCAL_STARTING, 0);
	assert_int_equal(c.to, ROUTE_TO_NONE);
	assert_string_equal(c.why,
	    "no VM is READY for vision and its local copy starts "
	    "(route.wait_s is 0: nothing waits)");
	/* Stopped: never tried; a VM on its way may be waited for. */
	c = pick_copy(&draining, 1, ROUTE_LOCAL_DOWN, 20);
	assert_int_equal(c.to, ROUTE_TO_NONE);
	assert_string_equal(c.why, "no VM is READY for vision and its local copy is stopped");
	c = pick_copy(&booting, 1, ROUTE_LOCAL_DOWN, 20);
	assert_int_equal(c.to, ROUTE_TO_WAIT);
	assert_non_null(strstr(c.why, "its local copy is stopped: waiting up to 20 s"));
	/* Up: it serves while a VM boots. */
	assert_int_equal(pick_copy(&booting, 1, ROUTE_LOCAL_UP, 20).to, ROUTE_TO_LOCAL);
}

static void
test_addresses(void **state)
{
	struct sockaddr_storage ss;
	char why[128], text[ADDR_TEXT_MAX];

	assert_int_equal(addr_parse("127.0.0.1:9101", &ss, why, sizeof why), 0);
	assert_true(addr_loopback((struct sockaddr *)&ss));
	addr_text((struct sockaddr *)&ss, text, sizeof text);
	assert_string_equal(text, "127.0.0.1:9101");
	assert_int_equal(addr_parse("[::1]:80", &ss, why, sizeof why), 0);
	assert_true(addr_loopback((struct sockaddr *)&ss));
	addr_text((struct sockaddr *)&ss, text, sizeof text);
	assert_string_equal(text, "[::1]:80");
	assert_int_equal(addr_parse("127.9.8.7:1", &ss, why, sizeof why), 0);
	assert_true(addr_loopback((struct sockaddr *)&ss));
	assert_int_equal(addr_parse("10.0.0.1:80", &ss, why, sizeof why), 0);
	assert_false(addr_loopback((struct sockaddr *)&ss));
	assert_int_equal(addr_parse("[::ffff:127.0.0.1]:80", &ss, why, sizeof why), 0);
	assert_true(addr_loopback((struct sockaddr *)&ss));
	assert_int_equal(addr_parse("::1:80", &ss, why, sizeof why), -EINVAL);
	assert_string_equal(why, "not ADDRESS:PORT (such as 127.0.0.1:9101)");
	assert_int_equal(addr_parse("[::1]80", &ss, why, sizeof why), -EINVAL);
	assert_int_equal(addr_parse("127.0.0.1:0", &ss, why, sizeof why), -EINVAL);
	assert_int_equal(addr_parse("127.0.0.1:", &ss, why, sizeof why), -EINVAL);
	assert_int_equal(addr_parse(":80", &ss, why, sizeof why), -EINVAL);
	assert_int_equal(addr_parse("host:80", &ss, why, sizeof why), -EINVAL);
	assert_string_equal(why, "'host' is not an IP address (names are not looked up)");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_ready_vm_first),
	    cmocka_unit_test(test_local_wait_none),
	    cmocka_unit_test(test_local_copy_states),
	    cmocka_unit_test(test_addresses),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
