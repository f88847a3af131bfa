#!/usr/bin/env bash
# The GPU path, end to end, for a machine with NVIDIA GPUs: the quick pipeline with replay on vLLM
# (CUDA, bf16), fine-tuning on Ray Train with NCCL between the workers and bf16 autocast, evaluation
# on the GPU. It checks from the run's own records that each ran where it should, and prints them.
#
#   bash bench/gpu_check.sh                 # from the repository root; `make setup` first
#   WORKERS=2 bash bench/gpu_check.sh       # one Ray Train worker per GPU (default: every GPU)
#
# Nothing here runs on a machine without a GPU: it stops with the reason.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
command -v nvidia-smi > /dev/null || { echo "gpu_check: no nvidia-smi: not a GPU machine" >&2; exit 2; }
GPUS=$(nvidia-smi --list-gpus | wc -l)
WORKERS=${WORKERS:-$GPUS}
$PY -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'torch sees no CUDA device')"
$PY -c "import vllm" || { echo "gpu_check: vllm does not import (make setup installs it on a GPU machine)" >&2; exit 2; }

OUT=$(mktemp -d /tmp/nofrog-gpu-check.XXXX)
export MLFLOW_TRACKING_URI="sqlite:///$OUT/mlflow.db"
started=$(date +%s)
.venv/bin/nofrog run --config configs/quick.yaml \
  --set replay.backend=vllm --set replay.vllm_dtype=bfloat16 \
  --set train.precision=bf16 --set compute.use_gpu=true --set compute.num_workers="$WORKERS" \
  --set tracking.output_dir="$OUT/runs" 2>&1 | tee "$OUT/run.log"
echo "gpu_check: the run took $(( $(date +%s) - started )) s on $GPUS GPU(s), $WORKERS worker(s)"

$PY - "$OUT" "$WORKERS" <<'PY'
import glob, json, sys
out, workers = sys.argv[1], int(sys.argv[2])
summary_file = sorted(glob.glob(f"{out}/runs/*/run_summary.json"))[-1]
summary = json.load(open(summary_file))
training = json.load(open(summary_file.replace("run_summary.json", "train/metadata.json")))["training"]
replay = summary["stage_engines"]["replay"]
checks = {
    "replay on vLLM": replay and replay["engine"] == "vllm",
    "training on CUDA": training["device"].startswith("cuda"),
    "bf16 autocast": training["precision"] == "bf16",
    "NCCL between the workers": training["process_group"] == "nccl",
    f"{workers} Ray Train worker(s)": training["world_size"] == workers,
    "gate decided": summary["gate"]["label"] in ("passed", "rejected"),
}
for name, ok in checks.items():
    print(f"gpu_check: {'ok  ' if ok else 'FAIL'} {name}")
print(f"gpu_check: stage seconds {summary['stage_seconds']}; gate {summary['gate']['label']}: {summary['gate']['reason']}")
sys.exit(0 if all(checks.values()) else 1)
PY
