"""Training progress a person can read: one live line per model on a terminal, a plain line every few epochs in a
log, and one summary line per model either way. Keras' own step bars stay off (distill/train.py fits with
verbose=0); tqdm draws the live line."""

from __future__ import annotations

import sys
import time

from edgekd._tf import keras

LOG_EVERY = 10  # epochs between plain progress lines when the output is not a terminal


class EpochProgress(keras.callbacks.Callback):
    """`label` (e.g. "teacher 2/3 (conv-teacher, bootstrap resample)"), epoch n/N, training and validation accuracy,
    the best validation accuracy so far, and tqdm's ETA for the epochs left at most (early stopping may end sooner)."""

    def __init__(self, label: str, epochs: int, stream=None):
        super().__init__()
        self.label, self.epochs = label, epochs
        self.stream = stream or sys.stdout
        self.live = self.stream.isatty()

    def on_train_begin(self, logs=None):
        from tqdm import tqdm

        self.started, self.best = time.perf_counter(), None
        self.bar = (
            tqdm(
                total=self.epochs,
                desc=self.label,
                unit="epoch",
                file=self.stream,
                leave=False,
                bar_format="{desc}: {n_fmt}/{total_fmt} epochs {bar:12} {postfix} [{elapsed}<{remaining}]",
            )
            if self.live
            else None
        )

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        train, val = logs.get("accuracy"), logs.get("val_accuracy")
        if val is not None:
            self.best = val if self.best is None else max(self.best, val)
        text = (f"train {train:.3f}" if train is not None else "") + (
            f", val {val:.3f}, best {self.best:.3f}" if val is not None else ""
        )
        if self.bar is not None:
            self.bar.set_postfix_str(text, refresh=False)
            self.bar.update(1)
        elif (epoch + 1) % LOG_EVERY == 0:
            print(f"{self.label}: epoch {epoch + 1}/{self.epochs}, {text}", file=self.stream, flush=True)

    def on_train_end(self, logs=None):
        if self.bar is not None:
            self.bar.close()

    def summary(self, epochs_run: int, best_epoch: int, best_val_accuracy: float) -> None:
        """One line per model, after it trained: what fit kept."""
        print(
            f"{self.label}: {epochs_run} epochs in {time.perf_counter() - self.started:.0f} s, kept epoch {best_epoch} "
            f"(validation accuracy {best_val_accuracy:.3f})",
            file=self.stream,
            flush=True,
        )
