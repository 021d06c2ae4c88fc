"""A finished run's windows and teachers, rebuilt: what compression fine-tuning and method sweeps train against.

The run folder keeps only test and calibration windows, so the windows of each part are rebuilt from the
dataset with the preprocessing (normalisation included) and split recorded in run.json, and the teachers
(teacher_<i>.h5) are run once on them: the same windows and teacher outputs `edgekd distill` trained with.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgekd.data.dataset import load_dataset
from edgekd.data.prepare import Windows, check_dataset_fits, recording_windows
from edgekd.data.splits import split_indices_from_dict
from edgekd.data.windows import Preprocessor
from edgekd.errors import UserError
from edgekd.models.classical import with_classical_teacher


@dataclass
class RunTeacher:
    model: object  # keras.Model
    channels: list[int] | None  # the input channels it reads (--teachers-from modalities), None: all


@dataclass
class RunData:
    parts: dict[str, Windows]
    teachers: list[RunTeacher]
    teacher_logits: dict[str, list[np.ndarray]]  # part -> one n x C array per teacher
    n_classes: int
    target_logits: dict[
        str, list[np.ndarray]
    ]  # what the KD targets fuse: teacher_logits, and the run's classical teacher's


def dataset_path_of(run_dir: Path, run: dict, data: str | Path | None, why: str) -> Path:
    path = Path(data or run["dataset"]["path"])
    if not (path / "dataset.toml").is_file():
        raise UserError(
            f"{path}: the run's dataset is not there any more ({why}); pass --data with the dataset "
            f"{run_dir} was trained on"
        )
    return path


def load_run_windows(run_dir: Path, run: dict, dataset_path: Path, parts=("train", "val")) -> dict[str, Windows]:
    """The windows of each part, as `edgekd distill` made them (normalised with the run's statistics)."""
    dataset = load_dataset(dataset_path)
    preprocessor = Preprocessor.from_dict(run["preprocessing"])
    check_dataset_fits(dataset, preprocessor, run["classes"], f"the run {run_dir}")
    return {
        part: recording_windows(dataset, split_indices_from_dict(dataset, run["split"], part), preprocessor)
        for part in parts
    }


def load_run_data(run_dir: Path, run: dict, dataset_path: Path, parts=("train", "val")) -> RunData:
    from edgekd.distill.teachers import teacher_input
    from edgekd.distill.train import predict_logits
    from edgekd.models.saved import load_model

    classical = run["config"].get("classical_teacher", "none")
    # the LDA teacher is refitted on the training windows
    windows = load_run_windows(
        run_dir, run, dataset_path, (*parts, "train") if classical != "none" and "train" not in parts else parts
    )
    # In index order (teacher_10 after teacher_9): run.json's teachers.channels[i] belongs to teacher_<i>.
    teacher_files = sorted(run_dir.glob("teacher_*.h5"), key=lambda p: (len(p.stem), p.stem))
    if not teacher_files:
        raise UserError(
            f"{run_dir}: no teacher_<i>.h5 files; distilling again needs the run's teachers, "
            f"so run `edgekd distill` again"
        )
    # --teachers-from modalities: each teacher reads only its channel group (runs from before it: all channels).
    teacher_channels = (run.get("teachers") or {}).get("channels") or [None] * len(teacher_files)
    if len(teacher_channels) != len(teacher_files):
        raise UserError(
            f"{run_dir}: run.json lists channels for {len(teacher_channels)} teachers but the folder holds "
            f"{len(teacher_files)} teacher_<i>.h5 files; run `edgekd distill` again"
        )
    teachers = [RunTeacher(load_model(path), channels) for path, channels in zip(teacher_files, teacher_channels)]
    logits = {
        part: [predict_logits(t.model, teacher_input(windows[part].x, t.channels)) for t in teachers] for part in parts
    }
    target_logits = with_classical_teacher(classical, logits, windows, len(run["classes"]))
    return RunData({part: windows[part] for part in parts}, teachers, logits, len(run["classes"]), target_logits)
