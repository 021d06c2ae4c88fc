"""Datasets on disk, windows cut from them, and train/validation/test splits (numpy and scipy only)."""
