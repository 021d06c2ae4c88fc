"""Model architectures: declarative presets (presets.py, no TensorFlow) and the Keras builder (build.py)."""
