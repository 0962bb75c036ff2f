"""The `report` stage and the ablation ladder's tables and plots (paper Fig. 4 and Fig. 5 style).

Pure functions over metrics files and features; flows/report.py and flows/ablation.py log the files
they write to MLflow.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from rgsyn.ablation import ROWS


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def embedding_plot(real_feats: torch.Tensor, real_pids, syn_feats: torch.Tensor, syn_pids, path: str | Path,
                   n_ids: int = 10, title: str = "") -> Path:
    """2-D PCA (fitted on the real features of the shown identities) of real (•) vs synthetic (×)
    reference-encoder features for the first `n_ids` identities that have both; one colour per id."""
    plt = _plt()
    real_pids, syn_pids = np.asarray(real_pids), np.asarray(syn_pids)
    ids = [p for p in sorted(set(real_pids.tolist())) if (syn_pids == p).any()][:n_ids]
    r = np.isin(real_pids, ids)
    s = np.isin(syn_pids, ids)
    xr, xs = real_feats[torch.from_numpy(r)].double(), syn_feats[torch.from_numpy(s)].double()
    mean = xr.mean(0, keepdim=True)
    _, _, v = torch.linalg.svd(xr - mean, full_matrices=False)  # principal axes of the real features
    pr, ps = ((xr - mean) @ v[:2].T).numpy(), ((xs - mean) @ v[:2].T).numpy()  # (n, 2)
    fig, ax = plt.subplots(figsize=(6, 5))
    cmap = plt.get_cmap("tab10")
    for i, pid in enumerate(ids):
        c = cmap(i % 10)
        ax.scatter(*pr[real_pids[r] == pid].T, color=c, marker="o", s=36, edgecolors="k", linewidths=0.5)
        ax.scatter(*ps[syn_pids[s] == pid].T, color=c, marker="x", s=30)
    ax.scatter([], [], color="grey", marker="o", label="real")
    ax.scatter([], [], color="grey", marker="x", label="synthetic")
    ax.legend(loc="best")
    ax.set_title(title or f"reference-encoder features, {len(ids)} identities (PCA of the real ones)")
    return _save(plt, fig, path)


def ladder(results: dict[str, list[dict]]) -> dict:
    """{row name: per-seed metrics} -> {"rows": [{name, mAP_mean, mAP_std, rank1_mean, rank1_std,
    n_seeds, seeds}]} in ladder order; std is the sample std (ddof=1), 0 for one seed."""
    rows = []
    for name in [r for r in ROWS if r in results] + [r for r in results if r not in ROWS]:
        per = results[name]
        row = {"name": name, "n_seeds": len(per), "seeds": [m["seed"] for m in per]}
        for key, col in (("mAP", "mAP"), ("rank1", "rank1")):
            v = np.array([m[key] for m in per], dtype=float)
            row[f"{col}_mean"] = float(v.mean())
            row[f"{col}_std"] = float(v.std(ddof=1)) if len(v) > 1 else 0.0
        rows.append(row)
    return {"rows": rows}


def ladder_markdown(table: dict, notes: dict[str, str] | None = None) -> str:
    """The ladder as a Markdown table (percent, mean ± std) with the gain over real_only."""
    base = next((r for r in table["rows"] if r["name"] == "real_only"), None)
    lines = ["| row | mAP (%) | Rank-1 (%) | Δ mAP vs real_only | seeds | what changes |",
             "| --- | --- | --- | --- | --- | --- |"]
    for r in table["rows"]:
        gain = f"{100 * (r['mAP_mean'] - base['mAP_mean']):+.1f}" if base else "—"
        lines.append(f"| {r['name']} | {100 * r['mAP_mean']:.1f} ± {100 * r['mAP_std']:.1f} | "
                     f"{100 * r['rank1_mean']:.1f} ± {100 * r['rank1_std']:.1f} | {gain} | {r['n_seeds']} | "
                     f"{(notes or {}).get(r['name'], '')} |")
    return "\n".join(lines) + "\n"


def ladder_plot(table: dict, path: str | Path) -> Path:
    """Bar chart of mAP and Rank-1 per rung with ±1 std error bars."""
    plt = _plt()
    rows = table["rows"]
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(8, 4))
    for off, key, label in ((-0.2, "mAP", "mAP"), (0.2, "rank1", "Rank-1")):
        ax.bar(x + off, [100 * r[f"{key}_mean"] for r in rows], 0.4, yerr=[100 * r[f"{key}_std"] for r in rows],
               capsize=3, label=label)
    ax.set_xticks(x, [r["name"] for r in rows], rotation=20)
    ax.set_ylabel("%")
    ax.set_title(f"ablation ladder (mean ± std over {min(r['n_seeds'] for r in rows)}+ seeds)")
    ax.legend()
    return _save(plt, fig, path)


def write_json(obj, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=1))
    return path


def _read(path) -> dict:
    path = Path(path)
    return json.loads(path.read_text()) if path.exists() else {}


def pipeline_report(p, out_dir: str | Path = "reports") -> dict:
    """Summarise one pipeline run: reference (real only) vs downstream (real + synthetic), synthesis
    audit, generator checks -> reports/report.md + reports/embedding.png. Returns {"summary", "files"}."""
    from rgsyn.memory_bank import load_memory_bank
    from rgsyn.synth.reader import read_shards

    out_dir = Path(out_dir)
    ref, down = _read(p.reference.metrics), _read(p.downstream.metrics)
    synth, cs, rl = _read("metrics/synth.json"), _read("metrics/coldstart.json"), _read("metrics/rl.json")
    rl_after = rl.get("after", {})
    s = {"real_only_mAP": ref.get("mAP_mean"), "real_only_rank1": ref.get("rank1_mean"),
         "downstream_mAP": down.get("mAP_mean"), "downstream_rank1": down.get("rank1_mean"),
         "mAP_gain": down.get("mAP_gain"), "rank1_gain": down.get("rank1_gain"),
         "coldstart_top1": cs.get("after", {}).get("top1"), "rl_r_sem": rl_after.get("r_sem"), "synthetic_images": synth.get("samples"), "accepted": synth.get("accepted"),
         "accept_rate": synth.get("accept_rate"), "leakage_rate": synth.get("leakage_rate")}
    s = {k: v for k, v in s.items() if v is not None}
    files = []
    if p.downstream.mix.synthetic and Path(p.downstream.mix.synthetic).exists() and Path(p.rl.bank).exists():
        shards = read_shards(p.downstream.mix.synthetic, accepted_only=False)
        bank, pids = load_memory_bank(p.rl.bank)
        files.append(str(embedding_plot(bank, pids.numpy(), shards.features, shards.labels.numpy(),
                                        out_dir / "embedding.png")))
    md = ["# rgsyn pipeline report", "", "| | value |", "| --- | --- |"]
    md += [f"| {k} | {v:.4f} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in s.items()]
    n = ref.get("n_seeds")
    md += ["", f"Real only = `{p.reference.metrics}` ({n} seed{'' if n == 1 else 's'}); real + synthetic = "
           f"`{p.downstream.metrics}` (share {p.downstream.mix.share}, selection {p.downstream.selection.mode} "
           f"keeping {p.downstream.selection.ratio}); embedding plot: `reports/embedding.png`."]
    path = out_dir / "report.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(md) + "\n")
    files.insert(0, str(path))
    return {"summary": s, "files": files}
