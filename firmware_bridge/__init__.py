"""Host side of the serial link between a wearable (sEMG front-ends + IMUs on a microcontroller) and the
machine that runs the model (a Raspberry Pi or a laptop).

- `firmware_bridge.protocol`: the binary framed format (encoder, incremental resynchronising decoder,
  quantisation helpers, the device clock's units and wraps).
- `firmware_bridge.text`: the plain "v0,v1,...\\n" text mode many sensor sketches already print.
- `firmware_bridge.codecs`: both formats behind one interface, by `--wire` name (CODECS).
- `firmware_bridge.link`: serial ports, pseudo-terminals and TCP; reconnect with backoff; what to do when a port
  does not open.
- `firmware_bridge.live`: bytes -> samples -> windows -> model -> decisions (`edgekd stream`).
- `firmware_bridge.simulator` and `firmware_bridge.faults`: a dataset replayed as a device sends it, with faults
  on purpose (`edgekd simulate`, or `python -m firmware_bridge.simulator`).
- `firmware_bridge.calibrate`: the guided calibration of `edgekd stream --calibrate`.
- `firmware_bridge/PROTOCOL.md`: the wire specification for firmware authors.
- `firmware_bridge/firmware/`: a reference C99 encoder, shared test vectors and an Arduino-style sketch.

No TensorFlow is imported here (numpy, pyserial when a port opens, edgekd's windowing): this side runs where
TensorFlow is not installed.
"""
