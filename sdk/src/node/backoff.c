/* Exponential reconnect backoff with jitter. */
#include "node/backoff.h"

#define DEFAULT_BASE_MS 100u
#define DEFAULT_MAX_MS  5000u
#define DEFAULT_FACTOR  1.6
#define DEFAULT_JITTER  0.2
#define DEFAULT_SEED    UINT64_C(0x9e3779b97f4a7c15)

void nh_backoff_init(nh_backoff *b, uint32_t base_ms, uint32_t max_ms, uint64_t seed) {
    b->base_ms = base_ms != 0 ? base_ms : DEFAULT_BASE_MS;
    b->max_ms = max_ms != 0 ? max_ms : DEFAULT_MAX_MS;
    if (b->max_ms < b->base_ms) b->max_ms = b->base_ms;
    b->factor = DEFAULT_FACTOR;
    b->jitter = DEFAULT_JITTER;
    b->current_ms = (double)b->base_ms;
    b->attempts = 0;
    b->rng = seed != 0 ? seed : DEFAULT_SEED;
}

/* xorshift64; the state never becomes 0 from a non-zero start. */
static uint64_t xorshift64(uint64_t *s) {
    uint64_t x = *s;
    if (x == 0) x = DEFAULT_SEED;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *s = x;
    return x;
}

/* Uniform in [0, 1). */
static double uniform01(uint64_t *s) {
    return (double)(xorshift64(s) >> 11) * (1.0 / 9007199254740992.0);
}

/* Smallest integer >= v, for v >= 0 (avoids libm). */
static double ceil_pos(double v) {
    double t = (double)(uint64_t)v;
    return t < v ? t + 1.0 : t;
}

uint32_t nh_backoff_next(nh_backoff *b) {
    double cur = b->current_ms;
    double j = b->jitter;
    double v = cur * (1.0 + j * (2.0 * uniform01(&b->rng) - 1.0));

    /* Round, then clamp to the integers inside [base*(1-j), max*(1+j)]. */
    double lo = ceil_pos((double)b->base_ms * (1.0 - j));
    double hi = (double)(uint64_t)((double)b->max_ms * (1.0 + j));
    v = (double)(uint64_t)(v + 0.5);
    if (v < lo) v = lo;
    if (v > hi) v = hi;
    if (v < 1.0) v = 1.0;
    if (v > (double)UINT32_MAX) v = (double)UINT32_MAX;

    double nxt = cur * b->factor;
    b->current_ms = nxt > (double)b->max_ms ? (double)b->max_ms : nxt;
    b->attempts++;
    return (uint32_t)v;
}

void nh_backoff_reset(nh_backoff *b) {
    b->current_ms = (double)b->base_ms;
    b->attempts = 0;
}
