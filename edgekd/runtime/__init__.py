"""Device side of edgekd: load and run .tflite models with numpy and a TFLite runtime only.

Nothing under edgekd.runtime imports TensorFlow, tf_keras or tensorflow_model_optimization,
so it runs on a Raspberry Pi that has only numpy and ai-edge-litert installed.
"""
