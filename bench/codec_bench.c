/* Microbenchmark of the envelope codec (sdk/src/wire/codec.c): encodes and decodes a Gorums
 * echo request (seq, method "test.Echo.Raw", 64-byte payload) N times (default 5M) and prints
 * the nanoseconds per operation: encode + decode + free together, then each part alone.
 * Usage: codec_bench [iterations] */
#include "wire/codec.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* Keeps the compiler from dropping the work. */
static volatile size_t g_sink;

int main(int argc, char **argv) {
    long iters = argc > 1 ? atol(argv[1]) : 5000000;
    if (iters <= 0) {
        fprintf(stderr, "usage: %s [iterations]\n", argv[0]);
        return 2;
    }
    uint8_t payload[64];
    for (size_t i = 0; i < sizeof(payload); i++)
        payload[i] = (uint8_t)(i * 7 + 3);
    nh_wire_out out = {.method = "test.Echo.Raw", .payload = payload, .payload_len = 64};
    size_t sink = 0;

    /* encode + decode + free, as one echo hop costs a node */
    double t0 = now_ns();
    for (long i = 0; i < iters; i++) {
        out.seq = (uint64_t)i + 1;
        nh_bytes *b = nh_wire_encode(&out);
        nh_wire_msg *m = b != NULL ? nh_wire_decode(b->data, b->len, NULL) : NULL;
        if (m == NULL) {
            fprintf(stderr, "codec_bench: encode or decode failed\n");
            return 1;
        }
        sink += (size_t)m->seq + m->payload_len + (size_t)m->method[0];
        nh_wire_msg_free(m);
        nh_bytes_unref(b);
    }
    double t_both = (now_ns() - t0) / (double)iters;

    /* encode (+ buffer free) alone */
    t0 = now_ns();
    for (long i = 0; i < iters; i++) {
        out.seq = (uint64_t)i + 1;
        nh_bytes *b = nh_wire_encode(&out);
        if (b == NULL) return 1;
        sink += b->len;
        nh_bytes_unref(b);
    }
    double t_enc = (now_ns() - t0) / (double)iters;

    /* decode (+ message free) alone */
    out.seq = 123456789;
    nh_bytes *b = nh_wire_encode(&out);
    if (b == NULL) return 1;
    t0 = now_ns();
    for (long i = 0; i < iters; i++) {
        nh_wire_msg *m = nh_wire_decode(b->data, b->len, NULL);
        if (m == NULL) return 1;
        sink += m->payload_len;
        nh_wire_msg_free(m);
    }
    double t_dec = (now_ns() - t0) / (double)iters;
    size_t wire_len = b->len;
    nh_bytes_unref(b);

    g_sink = sink;
    printf("codec_bench: %ld iterations, %zu-byte envelope: encode+decode %.1f ns/op "
           "(encode %.1f, decode %.1f)\n",
           iters, wire_len, t_both, t_enc, t_dec);
    return 0;
}
