"""One Ray Train worker against two, at the same global batch, on the real model: the same losses and
learning rates step by step (docs: N workers train exactly what one worker trains at N times the
batch).

`nofrog train --config configs/default.yaml` for a few steps, once on 1 worker at the default's
batch of 10 rows (8 task + 2 replay) and once on 2 workers at 5 rows each (4 + 1), both with one
CPU per worker, on one replay set (generated once into bench/work/throughput-replay by
bench/train_throughput.py, or here). Writes bench/results/workers_parity.json.

    .venv/bin/python bench/workers_parity.py --steps 4
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "bench" / "work" / "workers-parity"
REPLAY = ROOT / "bench" / "work" / "throughput-replay"
NOFROG = Path(sys.executable).parent / "nofrog"
ARMS = {"one_worker": ["compute.num_workers=1", "train.batch_size=10"],
        "two_workers": ["compute.num_workers=2", "train.batch_size=5"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "workers_parity.json")
    args = parser.parse_args()
    if not (REPLAY / "metadata.json").exists():
        subprocess.run([str(NOFROG), "replay", "--config", "configs/default.yaml", "--out", str(REPLAY)], cwd=ROOT,
                       check=True)
    common = [f"train.max_steps={args.steps}", "train.checkpoint_every=0", "compute.cpus_per_worker=1",
              "compute.torch_threads=1", f"replay.mix.dir={REPLAY}", "train.finch.init_batches=8"]
    arms = {}
    for name, overrides in ARMS.items():
        out = WORK / name
        if not (out / "metadata.json").exists():
            sets = [x for o in [*common, *overrides] for x in ("--set", o)]
            started = time.time()
            subprocess.run([str(NOFROG), "train", "--config", "configs/default.yaml", *sets, "--out", str(out)],
                           cwd=ROOT, check=True)
            print(f"{name}: {time.time() - started:.0f} s", flush=True)
        history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
        arms[name] = {"overrides": overrides, "loss": [h["loss"] for h in history], "lr": [h["lr"] for h in history],
                      "world_size": json.loads((out / "metadata.json").read_text())["training"]["world_size"]}
    one, two = arms["one_worker"], arms["two_workers"]
    results = {
        "command": f"python bench/workers_parity.py --steps {args.steps}",
        "machine": {"platform": platform.platform()},
        "setup": "configs/default.yaml on Gemma 3 270M; " + ", ".join(common),
        "arms": arms,
        "max_relative_difference": {
            key: max(abs(a - b) / abs(a) for a, b in zip(one[key], two[key])) for key in ("loss", "lr")},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results["max_relative_difference"], indent=2))


if __name__ == "__main__":
    main()
