/* The test echo service ("test.Echo.*"), registered on a server by nh_echo_register(). Used by
 * the integration tests, the interop tests (through nh_echo_server) and the benchmarks.
 *
 *   test.Echo.Echo    reply "echo: <payload>"
 *   test.Echo.Raw     reply the payload unchanged
 *   test.Echo.Fail    reply status NOT_FOUND (5) "not found: <payload>"
 *   test.Echo.Slow    payload = decimal ms; defer, sleep on a worker thread, reply "slept <ms>"
 *                     from that thread (does not release: the stream's order waits)
 *   test.Echo.SlowRelease  as Slow but releases the order first
 *   test.Echo.Hold    never replies (defers forever; released so the stream goes on)
 *   test.Echo.Count   one-way: counts calls (nh_echo_count())
 *   test.Echo.Order   reply the payload; records the arrival order (nh_echo_order())
 *   test.Echo.Big     payload = decimal size; reply that many 'x' bytes
 *   test.Echo.Meta    reply "k=v;..." of every metadata pair the handler sees
 *   test.Echo.Whoami  reply "<caller identity or -> kind=<peer kind> id=<peer id> local=<0|1>"
 */
#ifndef NH_TEST_ECHO_H
#define NH_TEST_ECHO_H

#include <nodehost/nodehost.h>

/** Registers every test.Echo method on srv. Returns 0 or -1. */
int nh_echo_register(nh_server *srv);

/** Number of test.Echo.Count calls received so far (any thread). */
long nh_echo_count(void);

/** Copies up to max payloads of test.Echo.Order calls, as integers, in arrival order; returns
 * how many were recorded. */
size_t nh_echo_order(long *out, size_t max);

/** Resets the counters and forgets the held contexts (without finishing them: for when their
 * runtime is gone, which freed them). */
void nh_echo_reset(void);

/** Deferred contexts of test.Echo.Hold that never got an answer; finishes them (owner thread
 * of their runtime is not required). Returns how many. */
size_t nh_echo_finish_held(void);

#endif
