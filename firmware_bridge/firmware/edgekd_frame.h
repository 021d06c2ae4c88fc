/*
 * edgekd_frame.h - reference encoder for the edgekd wire protocol v1 (see ../PROTOCOL.md).
 *
 * C99, no malloc, no dependencies beyond <stddef.h>/<stdint.h>/<string.h>/<float.h>; byte order of the
 * host MCU does not matter (every field is written little-endian byte by byte).
 *
 * Frame (little-endian):
 *   0   2      sync 0xA5 0x5A
 *   2   1      version = 1
 *   3   1      stream id
 *   4   2      sequence number (uint16, per stream, wraps)
 *   6   4      device timestamp of the first sample, microseconds (uint32, wraps)
 *   10  2      sample count n
 *   12  1      channel count c (>= 1)
 *   13  1      flags (0)
 *   14  4      scale, float32 (physical units per LSB)
 *   18  2*n*c  payload, int16, sample-major (s0c0 s0c1 ... s1c0 ...)
 *   ..  2      CRC-16/CCITT-FALSE over bytes 2 .. end of payload
 */
#ifndef EDGEKD_FRAME_H
#define EDGEKD_FRAME_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define EDGEKD_SYNC0 0xA5u
#define EDGEKD_SYNC1 0x5Au
#define EDGEKD_VERSION 1u
#define EDGEKD_HEADER_SIZE 18u
#define EDGEKD_CRC_SIZE 2u
#define EDGEKD_MAX_VALUES_PER_FRAME 4096u /* n_samples * n_channels */

/* Bytes on the wire for n x c values; a constant expression, for static buffers. */
#define EDGEKD_FRAME_SIZE(n_samples, n_channels) \
    (EDGEKD_HEADER_SIZE + 2u * (size_t)(n_samples) * (size_t)(n_channels) + EDGEKD_CRC_SIZE)
#define EDGEKD_MAX_FRAME_SIZE EDGEKD_FRAME_SIZE(EDGEKD_MAX_VALUES_PER_FRAME, 1) /* 8212 */

/* CRC-16/CCITT-FALSE: poly 0x1021, init 0xFFFF, no reflection, no final xor.
 * edgekd_crc16((const uint8_t *)"123456789", 9) == 0x29B1. */
uint16_t edgekd_crc16(const uint8_t *data, size_t len);
/* Continue a CRC over more bytes: edgekd_crc16(a+b) == edgekd_crc16_update(edgekd_crc16(a), b). */
uint16_t edgekd_crc16_update(uint16_t crc, const uint8_t *data, size_t len);

/* Frame size in bytes, or 0 when the shape is invalid (n == 0, c == 0, or n * c > 4096). */
size_t edgekd_frame_size(uint16_t n_samples, uint8_t n_channels);

/* Encode one frame into out[0 .. out_capacity). samples: n_samples * n_channels int16, sample-major
 * (samples[s * n_channels + ch]). Returns the bytes written, or 0 (nothing usable written) when the shape
 * is invalid, out/samples is NULL, the frame does not fit, or scale is not a finite float > 0. */
size_t edgekd_encode_frame(uint8_t *out, size_t out_capacity, uint8_t stream_id, uint16_t seq,
                           uint32_t timestamp_us, const int16_t *samples, uint16_t n_samples,
                           uint8_t n_channels, float scale);

/* value / scale (divided in float32), rounded half away from zero, clipped to [-32768, 32767], NaN -> 0.
 * Bit-for-bit the same as firmware_bridge.protocol.quantize() (needs IEEE float32 arithmetic: no
 * -ffast-math, FLT_EVAL_METHOD 0 as on Cortex-M4F/M7 and x86-64). */
int16_t edgekd_quantize(float value, float scale);

#ifdef __cplusplus
}
#endif

#endif /* EDGEKD_FRAME_H */
