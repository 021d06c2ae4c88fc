/*
 * make_vectors.c - host test driver for edgekd_frame.c: reads commands on stdin, prints one line per command.
 * tests/test_protocol.py compiles it with the system C compiler and checks its output against
 * test_vectors.json and the Python encoder, byte for byte.
 *
 *   cc -std=c99 -O2 -o make_vectors make_vectors.c edgekd_frame.c
 *
 * Commands (whitespace separated; floats are passed as their IEEE-754 bit patterns in hex, so no decimal
 * parsing is involved):
 *   F cap stream_id seq timestamp_us n c scale_bits v0 v1 ... v(n*c-1)
 *       -> the frame as lowercase hex, or "ERR" when edgekd_encode_frame returns 0 (cap: out_capacity)
 *   Q scale_bits value_bits   -> edgekd_quantize(value, scale) as a decimal integer
 *   S n c                     -> edgekd_frame_size(n, c) as a decimal integer
 *   C hexbytes                -> edgekd_crc16 of the bytes, as 4 lowercase hex digits ("-" for no bytes)
 */
#include <stdio.h>
#include <string.h>

#include "edgekd_frame.h"

static int16_t samples[EDGEKD_MAX_VALUES_PER_FRAME];
static uint8_t frame[EDGEKD_MAX_FRAME_SIZE + 16];
static uint8_t bytes[EDGEKD_MAX_FRAME_SIZE];
static char hex[2 * EDGEKD_MAX_FRAME_SIZE + 2];

static float float_from_bits(unsigned long bits)
{
    uint32_t b = (uint32_t)bits;
    float f;
    memcpy(&f, &b, sizeof f);
    return f;
}

int main(void)
{
    char cmd[4];
    while (scanf("%3s", cmd) == 1) {
        if (strcmp(cmd, "F") == 0) {
            unsigned long cap, sid, seq, ts, n, c, scale_bits, i, size;
            if (scanf("%lu %lu %lu %lu %lu %lu %lx", &cap, &sid, &seq, &ts, &n, &c, &scale_bits) != 7) {
                return 2;
            }
            if (n * c > EDGEKD_MAX_VALUES_PER_FRAME || cap > sizeof frame) {
                return 3;
            }
            for (i = 0; i < n * c; ++i) {
                long v;
                if (scanf("%ld", &v) != 1) {
                    return 2;
                }
                samples[i] = (int16_t)v;
            }
            size = (unsigned long)edgekd_encode_frame(frame, (size_t)cap, (uint8_t)sid, (uint16_t)seq,
                                                      (uint32_t)ts, samples, (uint16_t)n, (uint8_t)c,
                                                      float_from_bits(scale_bits));
            if (size == 0) {
                puts("ERR");
            } else {
                for (i = 0; i < size; ++i) {
                    printf("%02x", frame[i]);
                }
                putchar('\n');
            }
        } else if (strcmp(cmd, "Q") == 0) {
            unsigned long scale_bits, value_bits;
            if (scanf("%lx %lx", &scale_bits, &value_bits) != 2) {
                return 2;
            }
            printf("%d\n", (int)edgekd_quantize(float_from_bits(value_bits), float_from_bits(scale_bits)));
        } else if (strcmp(cmd, "S") == 0) {
            unsigned long n, c;
            if (scanf("%lu %lu", &n, &c) != 2) {
                return 2;
            }
            printf("%lu\n", (unsigned long)edgekd_frame_size((uint16_t)n, (uint8_t)c));
        } else if (strcmp(cmd, "C") == 0) {
            size_t len, i;
            if (scanf("%16419s", hex) != 1) {
                return 2;
            }
            len = strcmp(hex, "-") == 0 ? 0 : strlen(hex) / 2;
            for (i = 0; i < len; ++i) {
                unsigned int b;
                if (sscanf(hex + 2 * i, "%2x", &b) != 1) {
                    return 2;
                }
                bytes[i] = (uint8_t)b;
            }
            printf("%04x\n", (unsigned int)edgekd_crc16(bytes, len));
        } else {
            return 2;
        }
    }
    return 0;
}
