#!/usr/bin/env bash
# GPU check (issue 4): train the recommender on CUDA (device auto, bf16 autocast) on Beauty and
# print seconds per epoch and the final NDCG@10, beside the same run on the CPU figure recorded in
# BENCHMARKS.md. Run it on a machine with an NVIDIA GPU:
#
#   DATA_ROOT=/path/to/shared/data bash benchmarks/gpu_check.sh
#
# The device machine does not see ../shared: copy amazon-beauty/ into an ignored folder of the
# checkout (e.g. .gpu-data/, listed in .git/info/exclude) and pass DATA_ROOT=.gpu-data.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
DATA_ROOT=${DATA_ROOT:-../shared/data}
if [ ! -x "$PY" ]; then
  python3 -m venv .venv && .venv/bin/pip install -q torch==2.13.0 && .venv/bin/pip install -q -e .
fi
"$PY" - <<'PYEOF'
import torch
assert torch.cuda.is_available(), "no CUDA device: this check needs a GPU"
print("device:", torch.cuda.get_device_name(0), "| torch", torch.__version__,
      "| bf16:", torch.cuda.is_bf16_supported())
PYEOF
PYTHONUNBUFFERED=1 "$PY" -m benchmarks.quality --dataset beauty --model text+id \
  --data-root "$DATA_ROOT" --train-config '{"device": "cuda", "bf16": true}'
