"""Host side of the serial link between a wearable (sEMG front-ends + IMUs on a microcontroller) and the
machine that runs the model (a Raspberry Pi or a laptop).

- `firmware_bridge.protocol`: the binary framed format (encoder, incremental resynchronising decoder,
  quantisation helpers).
- `firmware_bridge.text`: the plain "v0,v1,...\\n" text mode many sensor sketches already print.
- `firmware_bridge/PROTOCOL.md`: the wire specification for firmware authors.
- `firmware_bridge/firmware/`: a reference C99 encoder, shared test vectors and an Arduino-style sketch.

Only numpy and the standard library are imported here: this side runs where TensorFlow is not installed.
"""
