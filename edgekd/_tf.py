"""The one place TensorFlow is imported, with legacy Keras (tf_keras) switched on first.

tensorflow-model-optimization works only with tf_keras, and only tf_keras' LSTM converts to the fused
TFLite LSTM (../shared/docs/STACK.md). Training-side modules import `tf` and `keras` from here;
device-side modules (edgekd.runtime, edgekd.data) never import this.
"""

import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep the terminal for progress and results (edgekd/console.py)

from edgekd.console import quiet_native_output, verbose  # noqa: E402

try:
    with quiet_native_output():  # oneDNN, CUDA and absl notices, written from C++ at import and device discovery
        import tensorflow as tf
        import tf_keras as keras

        tf.config.list_physical_devices()  # the "failed call to cuInit" of a machine without a GPU comes here
except ImportError as e:  # a device-profile install (a Raspberry Pi) has no TensorFlow, by design
    from edgekd.errors import UserError

    raise UserError(
        f"this command trains or converts models and needs the training profile ({e.name} is not "
        f"installed); install it with: pip install 'edgekd[train]'"
    ) from None
if not verbose():
    tf.get_logger().setLevel("ERROR")  # Python-side TensorFlow warnings (retracing, deprecations)

__all__ = ["tf", "keras"]
