// edgekd_stream.ino - stream 6 sEMG channels (~1111 Hz) and a 6-axis IMU (~148 Hz) to the host in edgekd
// wire protocol v1 frames (see firmware_bridge/PROTOCOL.md). The host decodes them with
// firmware_bridge.protocol.FrameDecoder.
//
// Build: copy ../edgekd_frame.h and ../edgekd_frame.c next to this file (the Arduino IDE only compiles the
// sketch folder), pick your board, upload. Stream ids follow the model's streams in order:
// 0 = the first stream (emg), 1 = the second (imu).
//
// Bandwidth: one emg frame (11 x 6) is 152 bytes every 9.9 ms, one imu frame (2 x 6) 44 bytes every 13.5 ms:
// about 19 KB/s, so use a native-USB board (Serial is USB CDC) or a UART at >= 460800 baud.
// analogRead() speed matters: 6 reads must fit well inside the 900 us sample period (fine on SAMD, RP2040,
// ESP32, Teensy; too slow on a 16 MHz AVR at the default ADC prescaler).

#include "edgekd_frame.h"

// On-device inference (optional): `edgekd export RUN --target mcu --out model.tflite` writes model.cc and model.h
// beside model.tflite. Copy both next to this file (as model.cpp: the Arduino IDE compiles .c and .cpp only) and
// install the Arduino TensorFlow Lite Micro library. model.h gives the model's array, the ops its resolver needs and
// the tensor arena TFLM ran it in at export (docs/mcu.md). Without them the sketch only streams.
#if __has_include("model.h") && __has_include(<TensorFlowLite.h>)
#define EDGEKD_ON_DEVICE_MODEL 1
#include <TensorFlowLite.h>
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"
#include "tensorflow/lite/schema/schema_generated.h"
#include "model.h"

alignas(16) static uint8_t tensor_arena[model_tflite_arena_size];

// The interpreter, ready for a window; nullptr when the model does not load (an op not added, the arena too small).
static tflite::MicroInterpreter *model_setup()
{
    static tflite::MicroMutableOpResolver<model_tflite_op_count> resolver;
    if (!model_tflite_add_ops(resolver)) {
        return nullptr;
    }
    static tflite::MicroInterpreter interpreter(tflite::GetModel(model_tflite), resolver, tensor_arena,
                                                sizeof tensor_arena);
    return interpreter.AllocateTensors() == kTfLiteOk ? &interpreter : nullptr;
}

static tflite::MicroInterpreter *model;
#endif

#define SERIAL_BAUD 921600UL

#define EMG_STREAM_ID 0
#define EMG_CHANNELS 6
#define EMG_PERIOD_US 900UL   // 1111.1 Hz
#define EMG_BATCH 11          // samples per frame: 9.9 ms
#define EMG_MIDSCALE 512      // ADC count at 0 V differential (10-bit ADC; 2048 for 12-bit)
#define EMG_SCALE 1.0f        // physical units per LSB sent; 1.0 = raw centred ADC counts. Use the units the
                              // model was trained on, e.g. (3.3f / 1024.0f) * 1000.0f / GAIN for millivolts.

#define IMU_STREAM_ID 1
#define IMU_CHANNELS 6        // ax ay az gx gy gz
#define IMU_PERIOD_US 6757UL  // 148 Hz
#define IMU_BATCH 2           // samples per frame: 13.5 ms
#define IMU_SCALE 1.0f        // raw IMU LSB; one scale per frame applies to all its channels

#define MAX_CATCH_UP_US 100000UL  // fell this far behind (a blocked Serial): skip ahead instead of bursting

static const uint8_t EMG_PINS[EMG_CHANNELS] = {A0, A1, A2, A3, A4, A5};

struct Batch {
    uint8_t stream_id;
    uint8_t channels;
    uint16_t batch;       // samples per frame
    float scale;
    int16_t *buf;         // batch * channels, sample-major
    uint16_t count;       // samples held
    uint16_t seq;         // next sequence number (wraps 65535 -> 0)
    uint32_t first_us;    // device time of buf's first sample
};

static int16_t emg_buf[EMG_BATCH * EMG_CHANNELS];
static int16_t imu_buf[IMU_BATCH * IMU_CHANNELS];
static Batch emg = {EMG_STREAM_ID, EMG_CHANNELS, EMG_BATCH, EMG_SCALE, emg_buf, 0, 0, 0};
static Batch imu = {IMU_STREAM_ID, IMU_CHANNELS, IMU_BATCH, IMU_SCALE, imu_buf, 0, 0, 0};

#define EMG_FRAME_SIZE EDGEKD_FRAME_SIZE(EMG_BATCH, EMG_CHANNELS)
#define IMU_FRAME_SIZE EDGEKD_FRAME_SIZE(IMU_BATCH, IMU_CHANNELS)
static uint8_t frame_buf[EMG_FRAME_SIZE > IMU_FRAME_SIZE ? EMG_FRAME_SIZE : IMU_FRAME_SIZE];

static uint32_t next_emg_us;
static uint32_t next_imu_us;

// STUB: replace with your IMU driver (e.g. an MPU-6050/LSM6DS3 read over I2C/SPI), raw int16 per axis.
static void read_imu_stub(int16_t out[IMU_CHANNELS])
{
    static int16_t phase = 0;
    phase = (int16_t)(phase + 1);
    for (uint8_t ch = 0; ch < IMU_CHANNELS; ++ch) {
        out[ch] = (int16_t)(phase * (ch + 1));  // a recognisable ramp until the real IMU is wired
    }
}

static void push_sample(Batch &b, const int16_t *values, uint32_t t_us)
{
    if (b.count == 0) {
        b.first_us = t_us;
    }
    int16_t *dst = b.buf + (uint32_t)b.count * b.channels;
    for (uint8_t ch = 0; ch < b.channels; ++ch) {
        dst[ch] = values[ch];
    }
    if (++b.count < b.batch) {
        return;
    }
    size_t size = edgekd_encode_frame(frame_buf, sizeof frame_buf, b.stream_id, b.seq, b.first_us, b.buf,
                                      b.count, b.channels, b.scale);
    if (size > 0) {
        Serial.write(frame_buf, size);
    }
    b.seq++;  // counted even if not sent, so the host sees the gap
    b.count = 0;
}

// Returns the scheduled time of a due sample (and advances the schedule), or false when none is due.
static bool due(uint32_t now, uint32_t &next_us, uint32_t period_us, uint32_t &t_us)
{
    int32_t late = (int32_t)(now - next_us);
    if (late < 0) {
        return false;
    }
    if ((uint32_t)late > MAX_CATCH_UP_US) {
        next_us = now;  // the timestamps jump; the host sees the hole and fills or drops it
    }
    t_us = next_us;
    next_us += period_us;
    return true;
}

void setup()
{
    Serial.begin(SERIAL_BAUD);
    while (!Serial) {
        // native USB boards: wait for the host to open the port
    }
    next_emg_us = next_imu_us = micros();
#ifdef EDGEKD_ON_DEVICE_MODEL
    // Loaded at start so that a missing op or a short arena shows at once. Feeding it windows normalised and
    // quantized as the model's metadata says, then Invoke(), is the application's part.
    model = model_setup();
#endif
}

void loop()
{
    uint32_t now = micros();
    uint32_t t_us;
    if (due(now, next_emg_us, EMG_PERIOD_US, t_us)) {
        int16_t s[EMG_CHANNELS];
        for (uint8_t ch = 0; ch < EMG_CHANNELS; ++ch) {
            s[ch] = (int16_t)(analogRead(EMG_PINS[ch]) - EMG_MIDSCALE);
        }
        push_sample(emg, s, t_us);
    }
    if (due(now, next_imu_us, IMU_PERIOD_US, t_us)) {
        int16_t s[IMU_CHANNELS];
        read_imu_stub(s);
        push_sample(imu, s, t_us);
    }
}
