"""edgekd: distil, compress, export and run small sensor models on wearables and a Raspberry Pi.

Importing the package imports no TensorFlow: the device side (bench, stream) runs without it.
"""

__version__ = "0.1.0"
