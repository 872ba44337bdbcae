#!/usr/bin/env bash
# The GPU path in one run of a few minutes, on a machine with an NVIDIA GPU:
#   install (CPU-pinned torch replaced by the default CUDA build), a baseline trial on cuda,
#   a 4-member search sharing one GPU (--gpus-per-trial 0.25), and epoch time on cuda vs the CPU.
# Usage: bash benchmarks/gpu_check.sh [OUT_DIR]     (writes OUT_DIR/gpu_check.txt, default results/gpu)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-results/gpu}
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu_check.txt") 2>&1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || { echo "no GPU here"; exit 1; }
if [ ! -x .venv-gpu/bin/python ]; then
  # --system-site-packages: a GPU image's own CUDA torch is used where it has one; otherwise the
  # pinned version's CUDA build (the default wheel) is installed. Ray and the rest from pyproject.
  python3 -m venv --system-site-packages .venv-gpu
  if ! .venv-gpu/bin/python -c "import torch; assert torch.cuda.is_available()" 2>/dev/null; then
    .venv-gpu/bin/python -m pip install -q torch==2.13.0
  fi
  .venv-gpu/bin/python -m pip install -q -e '.[dev]' || {
    echo "could not install tune_app's dependencies (ray[tune], optuna, ...): this machine needs"
    echo "a package index or a wheel folder (pip install --find-links DIR)"; exit 1; }
fi
PY=.venv-gpu/bin/python
$PY -c "import torch; assert torch.cuda.is_available(), 'torch sees no GPU'; print('torch', torch.__version__, torch.cuda.get_device_name(0))"
$PY -m tune_app.cli data make-synthetic --out "$OUT/data.parquet"
echo "== baseline on cuda (1 GPU per trial)"
time $PY -m tune_app.cli baseline --data "$OUT/data.parquet" --phase-epochs 4 --gpus-per-trial 1 \
  --storage "$OUT/runs" --name base
echo "== 4-member search, 4 trials sharing one GPU"
time $PY -m tune_app.cli search --data "$OUT/data.parquet" --phase-epochs 4 --population 4 \
  --gpus-per-trial 0.25 --cpus-per-trial 1 --storage "$OUT/runs" --name search
echo "== the device the trials trained on (from the exports' config.json)"
for run in base search; do
  $PY -m tune_app.cli best "$OUT/runs/$run" --out "$OUT/best_$run" > /dev/null
  $PY -c "import json,sys; print(sys.argv[1], json.load(open(sys.argv[2]))['train']['device'])" \
    "$run" "$OUT/best_$run/config.json"
done
echo "== epoch time, cuda vs cpu (in-process, hidden 64; fixed start-up costs taken out)"
$PY - "$OUT/data.parquet" <<'PY'
import sys, tempfile, time
from pathlib import Path
from tune_app.plan.plan import load_plan
from tune_app.runs.local import train_locally
from tune_app.runs.spec import RunSpec
from tune_app.training.data import DataConfig, build_dataset, open_series
from tune_app.training.model import ModelConfig
from tune_app.training.trainer import TrainConfig
data = build_dataset(open_series(sys.argv[1], DataConfig()), DataConfig())
model = ModelConfig(components=len(data.components), hidden=64)


def seconds(device, phase_epochs):
    plan = load_plan(phase_epochs=phase_epochs)
    spec = RunSpec(plan, model, DataConfig(), TrainConfig(device=device), sys.argv[1])
    with tempfile.TemporaryDirectory() as tmp:
        began = time.perf_counter()
        train_locally(spec, data, Path(tmp))
        return time.perf_counter() - began, plan.total_epochs


times = {}
for device in ("cpu", "cuda"):
    seconds(device, 1)  # warm-up: CUDA context, kernels, imports
    (short, n_short), (long, n_long) = seconds(device, 1), seconds(device, 3)
    times[device] = (long - short) / (n_long - n_short)  # per epoch, start-up cancelled out
    print(f"{device}: {times[device] * 1000:.1f} ms/epoch")
print(f"cuda / cpu epoch time: {times['cuda'] / times['cpu']:.3f}")
PY
echo "gpu_check done"
