"""Training side: convert a distilled student to .tflite."""
