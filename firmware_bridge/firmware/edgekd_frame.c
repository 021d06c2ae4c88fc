/* edgekd_frame.c - reference encoder for the edgekd wire protocol v1 (see edgekd_frame.h, ../PROTOCOL.md). */
#include "edgekd_frame.h"

#include <float.h>
#include <string.h>

/* float must be IEEE-754 binary32 for the scale field (memcpy to uint32_t below). */
typedef char edgekd_float_is_32_bits[(sizeof(float) == 4) ? 1 : -1];

/* CRC-16/CCITT-FALSE, 4 bits at a time: table[i] = CRC register contribution of nibble i (32 bytes of flash). */
static const uint16_t edgekd_crc_nibble[16] = {
    0x0000u, 0x1021u, 0x2042u, 0x3063u, 0x4084u, 0x50A5u, 0x60C6u, 0x70E7u,
    0x8108u, 0x9129u, 0xA14Au, 0xB16Bu, 0xC18Cu, 0xD1ADu, 0xE1CEu, 0xF1EFu,
};

uint16_t edgekd_crc16_update(uint16_t crc, const uint8_t *data, size_t len)
{
    size_t i;
    for (i = 0; i < len; ++i) {
        uint8_t b = data[i];
        crc = (uint16_t)((crc << 4) ^ edgekd_crc_nibble[((crc >> 12) ^ (b >> 4)) & 0x0Fu]);
        crc = (uint16_t)((crc << 4) ^ edgekd_crc_nibble[((crc >> 12) ^ (b & 0x0Fu)) & 0x0Fu]);
    }
    return crc;
}

uint16_t edgekd_crc16(const uint8_t *data, size_t len)
{
    return edgekd_crc16_update(0xFFFFu, data, len);
}

size_t edgekd_frame_size(uint16_t n_samples, uint8_t n_channels)
{
    uint32_t values = (uint32_t)n_samples * (uint32_t)n_channels;
    if (n_samples == 0u || n_channels == 0u || values > EDGEKD_MAX_VALUES_PER_FRAME) {
        return 0u;
    }
    return EDGEKD_FRAME_SIZE(n_samples, n_channels);
}

static void put_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v & 0xFFu);
    p[1] = (uint8_t)(v >> 8);
}

static void put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v & 0xFFu);
    p[1] = (uint8_t)((v >> 8) & 0xFFu);
    p[2] = (uint8_t)((v >> 16) & 0xFFu);
    p[3] = (uint8_t)(v >> 24);
}

size_t edgekd_encode_frame(uint8_t *out, size_t out_capacity, uint8_t stream_id, uint16_t seq,
                           uint32_t timestamp_us, const int16_t *samples, uint16_t n_samples,
                           uint8_t n_channels, float scale)
{
    size_t size = edgekd_frame_size(n_samples, n_channels);
    size_t values, i;
    uint32_t scale_bits;
    uint8_t *p;

    if (size == 0u || out == NULL || samples == NULL || out_capacity < size) {
        return 0u;
    }
    if (!(scale > 0.0f) || scale > FLT_MAX) { /* NaN fails the first test, +inf the second */
        return 0u;
    }
    memcpy(&scale_bits, &scale, sizeof scale_bits);

    out[0] = EDGEKD_SYNC0;
    out[1] = EDGEKD_SYNC1;
    out[2] = EDGEKD_VERSION;
    out[3] = stream_id;
    put_u16(out + 4, seq);
    put_u32(out + 6, timestamp_us);
    put_u16(out + 10, n_samples);
    out[12] = n_channels;
    out[13] = 0u; /* flags */
    put_u32(out + 14, scale_bits);

    values = (size_t)n_samples * n_channels;
    p = out + EDGEKD_HEADER_SIZE;
    for (i = 0; i < values; ++i, p += 2) {
        put_u16(p, (uint16_t)samples[i]); /* two's complement bits, modulo 2^16 */
    }
    put_u16(p, edgekd_crc16(out + 2, size - 2u - EDGEKD_CRC_SIZE));
    return size;
}

int16_t edgekd_quantize(float value, float scale)
{
    float q = value / scale;
    float t, frac;
    int32_t r;
    if (q != q) {
        return 0; /* NaN */
    }
    if (q >= 32767.0f) {
        return 32767;
    }
    if (q <= -32768.0f) {
        return -32768;
    }
    r = (int32_t)q;         /* truncation toward zero; |q| < 32768 here */
    t = (float)r;
    frac = q - t;           /* exact */
    if (frac >= 0.5f) {
        ++r;
    } else if (frac <= -0.5f) {
        --r;
    }
    return (int16_t)r;
}
