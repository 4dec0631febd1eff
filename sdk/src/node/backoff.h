/* Exponential reconnect backoff with jitter (gRPC's connection-backoff shape). Pure logic. */
#ifndef NH_NODE_BACKOFF_H
#define NH_NODE_BACKOFF_H

#include <stdint.h>

/** Backoff state. Delays grow base, base*factor, ... up to max, each with +/- jitter. */
typedef struct nh_backoff {
    uint32_t base_ms;  /* first delay */
    uint32_t max_ms;   /* cap */
    double factor;     /* growth per attempt (1.6 as gRPC) */
    double jitter;     /* relative jitter, 0.2 means +/-20% */
    double current_ms; /* un-jittered delay the next call returns */
    uint32_t attempts; /* delays handed out since the last reset */
    uint64_t rng;      /* xorshift state; any non-zero seed */
} nh_backoff;

/** Initialises: base_ms 0 means 100, max_ms 0 means 5000 (max is raised to base if smaller);
 * factor 1.6, jitter 0.2, seeded with seed (0 picks a fixed non-zero seed). */
void nh_backoff_init(nh_backoff *b, uint32_t base_ms, uint32_t max_ms, uint64_t seed);

/** The next delay in milliseconds, always within [base*(1-jitter), max*(1+jitter)]. */
uint32_t nh_backoff_next(nh_backoff *b);

/** Back to the first delay (after a connection proved healthy). */
void nh_backoff_reset(nh_backoff *b);

#endif
