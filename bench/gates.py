"""The full rung (real + synthetic, DSS) trained on the rows each acceptance gate keeps, same shards,
same seeds: the audit's gate (identity-consistent in the auditor, not a near-copy, R_sem floor: the
shards' `accepted`) vs the former impostor gate (max reference-encoder cosine to any real training
image at or below the real impostor similarity at FMR 1e-3, and the R_sem floor).

python bench/gates.py [--seeds 0 1 2] [--fmr 0.001] [--threads 1]
Prints a row per gate: rows kept, their auditor consistency, mAP per seed and mean ± std, and the
paired difference (audit gate − impostor gate) with its bootstrap 95 % interval.
"""
import argparse

import numpy as np
import torch
import torch.nn.functional as F

from rgsyn import stats
from rgsyn.config import load_params
from rgsyn.data.layouts import read_index
from rgsyn.downstream.reid import train_reid
from rgsyn.downstream.trainer import Synthetic
from rgsyn.memory_bank import load_memory_bank
from rgsyn.synth.reader import read_shards


def impostor_threshold(feats: torch.Tensor, pids: torch.Tensor, fmr: float) -> float:
    """The (1 − fmr) quantile of the cosines of all pairs of real images of different identities."""
    f = F.normalize(feats.float(), dim=1)
    sim = f @ f.t()
    i, j = torch.triu_indices(len(f), len(f), 1)
    imp = sim[i, j][pids[i] != pids[j]].double().numpy()
    return float(np.quantile(imp, 1 - fmr))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--fmr", type=float, default=0.001)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--params", default="params.yaml")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    p = load_params(a.params)
    d = p.downstream
    shards = read_shards(p.synth.out_dir, accepted_only=False)
    col = lambda c: shards.table.column(c).to_numpy(zero_copy_only=False)  # noqa: E731
    bank, bank_pids = load_memory_bank(p.rl.bank)
    thr = impostor_threshold(bank, bank_pids, a.fmr)
    gates = {"audit gate (accepted)": col("accepted").astype(bool),
             f"impostor gate (FMR {a.fmr:g})": (col("nn_real_sim").astype(np.float64) <= thr)
             & (col("r_sem").astype(np.float64) >= p.synth.sem_floor)}
    images, ds = shards.images(), read_index(p.data.index)
    consistent = col("consistent").astype(bool)
    maps = {}
    for name, keep in gates.items():
        syn = Synthetic(images[torch.from_numpy(keep)], shards.labels[torch.from_numpy(keep)].tolist())
        maps[name] = [train_reid(ds, d.train, s, progress=False, synthetic=syn, mix=d.mix, selection=d.selection,
                                 compute=p.compute)[1]["mAP"] for s in a.seeds]
        print(f"| {name} | {int(keep.sum())} of {len(keep)} | {consistent[keep].mean():.2f} | "
              + " / ".join(f"{100 * m:.1f}" for m in maps[name])
              + f" | {100 * np.mean(maps[name]):.1f} ± {100 * np.std(maps[name], ddof=1):.1f} |", flush=True)
    (na, a_), (nb, b_) = list(maps.items())
    diff = stats.paired_difference(b_, a_)
    print(f"impostor threshold {thr:.3f}; {na} − {nb}: {100 * diff['mean']:+.1f} mAP points "
          f"[{100 * diff['ci_low']:+.1f}, {100 * diff['ci_high']:+.1f}], p = {diff['p_value']:.3f}")


if __name__ == "__main__":
    main()
