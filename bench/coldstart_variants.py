"""Cold starts of one prior side by side (`coldstart.tune` and the rest of the `coldstart` section), each into
its own folder, with the stage's own figures: identity consistency and fidelity against the truth.

    python bench/coldstart_variants.py [--params params.yaml] [--out checkpoints/coldstart-variants] \
        --variant lora '{"coldstart.tune": "lora", "coldstart.lora_rank": 16}' \
        --variant full '{"coldstart.tune": "full", "coldstart.body_lr": 0.0002}'

Each folder is a cold-start generator like `coldstart.out_dir`: `bench/oracle.py --generator NAME:FOLDER`
trains the downstream model on its samples (docs/generator.md).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from rgsyn.config import load_params
from rgsyn.generator.coldstart import run_coldstart

FIGURES = ("precision", "recall", "kernel_distance", "cas")


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--out", default="checkpoints/coldstart-variants")
    ap.add_argument("--variant", nargs=2, action="append", required=True, metavar=("NAME", "OVERRIDES_JSON"))
    a = ap.parse_args(argv)
    res = {}
    for name, over in a.variant:
        folder = Path(a.out) / name
        over = {**json.loads(over), "coldstart.out_dir": str(folder), "coldstart.grid": str(folder / "samples.png")}
        t0 = time.time()
        out = run_coldstart(load_params(a.params, over))
        res[name] = {"overrides": over, "seconds": time.time() - t0, **out}
        (folder / "metrics.json").write_text(json.dumps(res[name], indent=1, default=str))
        f = out["fidelity"]["after"]
        print(f"{name}: top-1 {out['after']['top1']:.3f}  " + "  ".join(f"{k} {f[k]:.3f}" for k in FIGURES)
              + f"  ({res[name]['seconds']:.0f} s) -> {folder}", flush=True)
    return res


if __name__ == "__main__":
    main()
