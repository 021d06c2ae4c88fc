#!/usr/bin/env bash
# Distillation on a GPU (issue 22): the myo22 cross-validation of benchmarks/people.py (seed 0, every option at its
# default) trained by TensorFlow's CUDA build, with the seconds each fold took, against the CPU records beside it.
#
#     bash benchmarks/gpu.sh      # on a machine with an NVIDIA GPU and ../shared/data/myo22; writes
#                                 # benchmarks/records/gpu/people-seed-0.json
#
# Its own virtual environment (.venv-gpu), so the CPU one stays as CI has it. Not run yet: no GPU was lent to the
# sessions that wrote it.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv-gpu
test -x $VENV/bin/python || python3 -m venv $VENV
$VENV/bin/python -m pip install --quiet -r requirements/lock.txt "tensorflow[and-cuda]==2.21.0"
$VENV/bin/python -m pip install --quiet --no-deps -e .
$VENV/bin/python -c "import tensorflow as tf, sys; gpus = tf.config.list_physical_devices('GPU'); print('GPUs:', gpus); sys.exit(0 if gpus else 'no GPU visible to TensorFlow')"

OUT=benchmarks/out/gpu/people-seed-0
$VENV/bin/edgekd distill ../shared/data/myo22 --cv 5 --seed 0 --quiet --out "$OUT"
mkdir -p benchmarks/records/gpu
$VENV/bin/python - "$OUT" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
cv = json.loads((out / "cv_report.json").read_text())
folds = [json.loads((Path(f["run"]) / "report.json").read_text()) for f in cv["folds"]]
record = {"command": f"edgekd distill ../shared/data/myo22 --cv 5 --seed 0 --out {out}", "summary": cv["summary"],
          "device": folds[0]["config"]["device"], "seconds_per_fold": [round(r["timings_s"]["total"]) for r in folds]}
Path("benchmarks/records/gpu/people-seed-0.json").write_text(json.dumps(record, indent=2) + "\n")
print(json.dumps(record, indent=2))
PY
