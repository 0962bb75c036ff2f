"""The `report` stage and the ablation ladder's tables and plots (paper Fig. 4 and Fig. 5 style).

Pure functions over metrics files and features; flows/report.py and flows/ablation.py log the files
they write to MLflow.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from rgsyn import stats
from rgsyn.ablation import BELOW, ROWS, below_rungs


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


def ladder(results: dict[str, list[dict]], metric: str = "mAP", extra: tuple[str, ...] = ("rank1",),
           below_of: dict[str, str] | None = None) -> dict:
    """{row name: per-seed metrics} -> {"rows": [...]} in ladder order. Per row: mean ± sample std
    (ddof=1) of `metric` and each of `extra`; the paired difference of `metric` to real_only (same
    seeds) with the paired t-test's 95 % interval and p-value (`<metric>_diff_real_only`, `ci_low`,
    `ci_high`, `p_value`, `se`; a t-interval because a percentile bootstrap over 5-10 seeds is too
    narrow); and the same against the rung below (`vs_below`: `below_of` (default ablation.BELOW, see
    ablation.below_rungs) where that is not the row above and ran), with `beats_below` when that
    interval lies above zero."""
    below_of = BELOW if below_of is None else below_of
    names = [r for r in ROWS if r in results] + [r for r in results if r not in ROWS]
    by_seed = {n: {m["seed"]: m for m in results[n]} for n in names}
    rows = []
    for i, name in enumerate(names):
        per = results[name]
        row = {"name": name, "n_seeds": len(per), "seeds": [m["seed"] for m in per],
               f"per_seed_{metric}": [m[metric] for m in per]}
        for key in (metric, *extra):
            v = np.array([m[key] for m in per], dtype=float)
            row[f"{key}_mean"] = float(v.mean())
            row[f"{key}_std"] = float(v.std(ddof=1)) if len(v) > 1 else 0.0
        below = below_of.get(name) if below_of.get(name) in by_seed else (names[i - 1] if i > 0 else None)
        for tag, other in (("real_only", "real_only" if "real_only" in by_seed else None), ("below", below)):
            if other is None or other == name or other not in by_seed:
                continue
            seeds = [s for s in row["seeds"] if s in by_seed[other]]
            d = stats.paired_t([by_seed[other][s][metric] for s in seeds], [by_seed[name][s][metric] for s in seeds])
            if tag == "real_only":
                row.update({f"{metric}_diff_real_only": d["mean"], "ci_low": d["ci_low"], "ci_high": d["ci_high"],
                            "p_value": d["p_value"], "se": d["se"], "n_paired": d["n"]})
            else:
                row["vs_below"] = {"name": other, **d}
                row["beats_below"] = bool(d["ci_low"] > 0)
        rows.append(row)
    return {"rows": rows, "metric": metric, "interval": "paired t, 95 %"}


def face_ladder(results: dict[str, list[dict]], sets, groups, below_of: dict[str, str] | None = None) -> dict:
    """The ladder on faces: `avg_acc` (mean accuracy over the pair sets) as the metric, and per row
    `sets` {set: {mean, std}}, `groups` {group: {mean, std}} and TO (`to_mean`, `to_std`)."""
    table = ladder(results, "avg_acc", ("to",), below_of)
    for row in table["rows"]:
        per = results[row["name"]]
        ms = lambda k: {"mean": float(np.mean([m[k] for m in per])),  # noqa: E731
                        "std": float(np.std([m[k] for m in per], ddof=1)) if len(per) > 1 else 0.0}
        row["sets"] = {s: ms(s) for s in sets}
        row["groups"] = {g: ms(f"group_{g}") for g in groups}
        row["group_mean"], row["group_std"] = ms("group_mean"), ms("group_std")
    return table


def ladder_markdown(table: dict, notes: dict[str, str] | None = None) -> str:
    """The ladder as a Markdown table (percent points) with paired differences and their intervals,
    then one line per rung that does not beat the rung below it."""
    m = table.get("metric", "mAP")
    second = "rank1" if m == "mAP" else "to"
    label = {"mAP": "mAP", "avg_acc": "avg. accuracy", "rank1": "Rank-1", "to": "TO"}
    lines = [f"| row | {label[m]} (%) | {label[second]} (%) | Δ {label[m]} vs real_only [95 % t-interval], p | "
             f"Δ vs rung below [95 % t-interval], p | seeds | what changes |", "| --- | --- | --- | --- | --- | --- | --- |"]
    fmt = lambda d, lo, hi, p: f"{100 * d:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}], p = {p:.3f}"  # noqa: E731
    worse = []
    for r in table["rows"]:
        base = fmt(r[f"{m}_diff_real_only"], r["ci_low"], r["ci_high"], r["p_value"]) if "ci_low" in r else "—"
        vb = r.get("vs_below")
        below = f"{fmt(vb['mean'], vb['ci_low'], vb['ci_high'], vb['p_value'])} ({vb['name']})" if vb else "—"
        if vb and not r["beats_below"]:
            worse.append(f"- `{r['name']}` does not beat `{vb['name']}`: the 95 % interval of the paired "
                         f"difference, [{100 * vb['ci_low']:+.1f}, {100 * vb['ci_high']:+.1f}] points, includes "
                         f"{'or lies below ' if vb['ci_high'] <= 0 else ''}zero.")
        lines.append(f"| {r['name']} | {100 * r[f'{m}_mean']:.1f} ± {100 * r[f'{m}_std']:.1f} | "
                     f"{100 * r[f'{second}_mean']:.1f} ± {100 * r[f'{second}_std']:.1f} | {base} | {below} | "
                     f"{r['n_seeds']} | {(notes or {}).get(r['name'], '')} |")
    return "\n".join(lines + [""] + (worse or ["Every rung beats the rung below it (95 % interval above zero)."])) + "\n"


def write_ladder(table: dict, base: str | Path, notes: dict[str, str]) -> list[str]:
    """`base`.json (the table with its per-seed values), .md and .png. -> the paths"""
    n = len(table["seeds"])
    md = Path(f"{base}.md")
    md.write_text(f"# Ablation ladder ({n} seeds, {table['minutes']:.1f} min)\n\n" + ladder_markdown(table, notes))
    return [str(write_json(table, f"{base}.json")), str(ladder_plot(table, f"{base}.png")), str(md)]


def ladder_start(table: dict) -> str:
    """The trainers' starting weights a ladder was trained from (ladders written before the field: random init,
    the only start there was)."""
    return table.get("start", "random init")


def rescore(base: str | Path, p, notes: dict[str, str]) -> dict:
    """The ladder's statistics computed again from the per-seed values `base`.json holds (no training):
    what a change of the interval method needs. -> the table, written back as write_ladder does"""
    old = json.loads(Path(f"{base}.json").read_text())
    per = old["per_seed"]
    mode = old.get("selection", "fast")  # the mode the ladder's RL rungs trained with (older ladders: fast)
    below_of = below_rungs(mode)
    table = (face_ladder(per, p.data.sets, p.data.groups, below_of) if old.get("metric") == "avg_acc"
             else ladder(per, below_of=below_of))
    table.update(minutes=old["minutes"], seeds=old["seeds"], per_seed=per, selection=mode, start=ladder_start(old))
    write_ladder(table, base, notes)
    return table


README_BEGIN, README_END = "<!-- results: generated by `python -m rgsyn.report --readme`; do not edit -->", \
    "<!-- results: end -->"


def _ladder_rows(table: dict) -> list[str]:
    m = table["metric"]
    fmt = lambda d, lo, hi: f"{100 * d:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}]"  # noqa: E731
    out = [f"| row | {'mAP' if m == 'mAP' else 'avg. accuracy'} (%) | seeds | Δ vs real only [95 % t-interval] | p "
           f"| Δ vs rung below [95 % t-interval] |", "| --- | --- | --- | --- | --- | --- |"]
    for r in table["rows"]:
        base = (fmt(r[f"{m}_diff_real_only"], r["ci_low"], r["ci_high"]), f"{r['p_value']:.3f}") if "ci_low" in r \
            else ("—", "—")
        vb = r.get("vs_below")
        below = f"{fmt(vb['mean'], vb['ci_low'], vb['ci_high'])} ({vb['name']})" if vb else "—"
        out.append(f"| {r['name']} | {100 * r[f'{m}_mean']:.1f} ± {100 * r[f'{m}_std']:.1f} | {r['n_seeds']} | "
                   f"{base[0]} | {base[1]} | {below} |")
    return out


def readme_results(root: str | Path = ".") -> str:
    """The README's results block, read from the committed reports and metrics: both ladders and the
    last `make run` / `make run-face`, each with the file it comes from."""
    root = Path(root)
    out = []
    for title, path, cmd in (("re-id", "reports/ablation.json", "make ablation"),
                             ("faces", "reports/face/ablation.json", "make ablation-face")):
        t = _read(root / path)
        if t:
            out += [f"**The ablation ladder, {title}** — `{cmd}` ({len(t['seeds'])} seeds, {t['minutes']:.0f} min, "
                    f"trainers from {ladder_start(t)}; `{path[:-5]}.md`):", ""] + _ladder_rows(t) + [""]
    runs = [(name, _read(root / m / "rl.json"), _read(root / m / "synth.json"), _read(root / m / "downstream.json"),
             _read(root / r / "privacy.json"), _read(root / m / "utility.json"))
            for name, m, r in (("re-id", "metrics", "reports"), ("faces", "metrics/face", "reports/face"))]
    f3 = lambda x: f"{x:.3f}" if isinstance(x, (int, float)) else "—"  # noqa: E731

    def cells(rl, sy, dn, pv, ut):
        metric = "avg_acc" if "avg_acc_mean" in dn else "mAP"
        ro = dn.get("real_only", {})
        mia = pv.get("mia", {})
        ci = lambda k: (f"{f3(mia[k]['auc'])} [{f3(mia[k]['auc_ci'][0])}, {f3(mia[k]['auc_ci'][1])}]"  # noqa: E731
                        if k in mia else "—")
        d = ut.get("diff", {})
        return [f"{metric} {100 * ro.get(f'{metric}_mean', float('nan')):.1f} → "
                f"{100 * dn.get(f'{metric}_mean', float('nan')):.1f} (seed{'s' if dn.get('n_seeds', 1) > 1 else ''} "
                f"{', '.join(str(x['seed']) for x in dn.get('per_seed', []))})",
                (f"{ut['verdict']}: {100 * d['mean']:+.1f} [{100 * d['ci_low']:+.1f}, {100 * d['ci_high']:+.1f}], "
                 + pairs_phrase(ut)
                 if ut else "—"),
                f"{f3(rl.get('before', {}).get('top1'))} → {f3(rl.get('after', {}).get('top1'))} "
                f"(± {f3(rl.get('se', {}).get('top1'))})",
                f"{sy.get('samples', '—')}, {sy.get('accepted', '—')}",
                f"{f3(pv.get('copy', {}).get('rate'))}", ci("loss"), ci("shard"),
                f"{f3(pv.get('novel', {}).get('leak_rate'))}"]

    labels = ["real only → real + synthetic (test split)", "utility check on held-out train identities",
              "identity consistency (auditor top-1), RL: before → after (± paired s.e.)",
              "samples, accepted by the audit", "near-copy rate", "membership inference AUC, loss [95 %]",
              "membership inference AUC, shards only [95 %]", "novel identities: leak rate"]
    cols = [cells(*r[1:]) for r in runs]
    out += ["**One run** — `make run` (`reports/report.md`, `reports/privacy.md`) and `make run-face` "
            "(`reports/face/`); one training seed, so the test-split row is inside seed noise:", "",
            "| | re-id | faces |", "| --- | --- | --- |"]
    out += [f"| {lab} | {a} | {b} |" for lab, a, b in zip(labels, *cols)]
    return "\n".join([README_BEGIN, ""] + out + ["", README_END])


def update_readme(path: str | Path = "README.md") -> bool:
    """Write readme_results() between the README's markers. -> whether it changed"""
    path = Path(path)
    text = path.read_text()
    i, j = text.index(README_BEGIN), text.index(README_END) + len(README_END)
    new = text[:i] + readme_results(path.parent) + text[j:]
    path.write_text(new)
    return new != text


def ladder_plot(table: dict, path: str | Path) -> Path:
    """mAP per rung: mean with the per-seed points, and the paired difference to real_only with its
    bootstrap 95 % interval."""
    plt = _plt()
    rows, m = table["rows"], table.get("metric", "mAP")
    x = np.arange(len(rows))
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4))
    a1.bar(x, [100 * r[f"{m}_mean"] for r in rows], 0.6, color="lightsteelblue")
    for i, r in enumerate(rows):
        per = r.get(f"per_seed_{m}", [])
        a1.scatter([i] * len(per), [100 * v for v in per], s=10, color="k", zorder=3)
    a1.set_xticks(x, [r["name"] for r in rows], rotation=20)
    a1.set_ylabel(f"{m} (%)")
    lo = min(100 * r[f"{m}_mean"] for r in rows)
    a1.set_ylim(lo - 10, None)
    a1.set_title(f"{m} per rung ({min(r['n_seeds'] for r in rows)}+ seeds; dots: seeds)")
    d = [r for r in rows if "ci_low" in r]
    xi = np.arange(len(d))
    a2.errorbar(xi, [100 * r[f"{m}_diff_real_only"] for r in d],
                yerr=[[100 * (r[f"{m}_diff_real_only"] - r["ci_low"]) for r in d],
                      [100 * (r["ci_high"] - r[f"{m}_diff_real_only"]) for r in d]], fmt="o", capsize=4)
    a2.axhline(0, color="grey", ls=":")
    a2.set_xticks(xi, [r["name"] for r in d], rotation=20)
    a2.set_ylabel(f"Δ {m} vs real_only (points)")
    a2.set_title("paired difference, bootstrap 95 % interval")
    return _save(plt, fig, path)


def write_json(obj, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=1))
    return path


def _read(path) -> dict:
    path = Path(path)
    return json.loads(path.read_text()) if path.exists() else {}


def face_tables(p, ref: dict, down: dict) -> list[str]:
    """Markdown: verification accuracy per pair set and their average, then the demographic-group
    accuracies with mean, std and TO, for real only and the full method (mean ± std over seeds, %)."""
    def cell(m, k):
        return f"{100 * m[f'{k}_mean']:.1f} ± {100 * m[f'{k}_std']:.1f}" if f"{k}_mean" in m else "—"
    rows = (("real only", ref), ("real + synthetic (full method)", down))
    sets, groups = list(p.data.sets), list(p.data.groups)
    out = ["| | " + " | ".join(sets) + " | average |", "| --- |" + " --- |" * (len(sets) + 1)]
    out += [f"| {n} | " + " | ".join(cell(m, k) for k in sets) + f" | {cell(m, 'avg_acc')} |" for n, m in rows]
    out += ["", "| | " + " | ".join(groups) + " | mean | std | TO |", "| --- |" + " --- |" * (len(groups) + 3)]
    out += [f"| {n} | " + " | ".join(cell(m, f"group_{g}") for g in groups) +
            f" | {cell(m, 'group_mean')} | {cell(m, 'group_std')} | {cell(m, 'to')} |" for n, m in rows]
    return out


def pairs_phrase(util: dict) -> str:
    """What the utility check's interval is over: "3 pairs (3 folds × 1 seed)" (or "3 seeds" for a
    metrics file of the single-split check)."""
    d = util["diff"]
    if "folds" not in util:
        return f"{d['n']} seeds"
    n = len(util["seeds"])
    return f"{d['n']} pairs ({util['folds']} folds × {n} seed{'' if n == 1 else 's'})"


def utility_line(util: dict, shipped: str | None) -> str:
    """The report's first line: the utility check's verdict (metrics/utility.json) in words, and what
    the downstream stage shipped."""
    if not util:
        return "no utility check ran (the `utility` stage's metrics file is missing)"
    d, m = util["diff"], util["metric"]
    over = pairs_phrase(util)
    fig = (f"{m} real + synthetic − real only {100 * d['mean']:+.1f} [{100 * d['ci_low']:+.1f}, "
           f"{100 * d['ci_high']:+.1f}] points, 95 % t-interval over {over} on held-out train identities")
    if util["verdict"] == "inconclusive" and "pairs_needed" in util:
        need = util["pairs_needed"]
        fig += ("; no number of pairs would resolve the observed difference" if need is None else
                f"; ~{need} pairs would resolve the observed difference")
    words = {"helps": "the synthetic data helps on this data",
             "hurts": "THE SYNTHETIC DATA HURTS ON THIS DATA",
             "inconclusive": "the utility check cannot tell whether the synthetic data helps on this data"}
    ship = {"real_only": "the shipped downstream model is real only (downstream.require_gain)",
            "real+synthetic": "the shipped downstream model is trained on real + synthetic data"}.get(shipped or "", "")
    return f"{words[util['verdict']]} ({fig}){'; ' + ship if ship else ''}"


def pipeline_report(p) -> dict:
    """Summarise one pipeline run: real only vs real + synthetic, the generator's checks (cold start,
    RL), synthesis and the privacy audit -> report.markdown + report.embedding. -> {"summary", "files"}."""
    from rgsyn.memory_bank import load_memory_bank
    from rgsyn.synth.reader import read_shards

    down = _read(p.downstream.metrics)
    ref = down.get("real_only") or _read(p.reference.metrics)  # real only on the seeds downstream trained
    util = _read(p.utility.metrics)
    synth, cs, rl = _read(p.synth.metrics), _read(p.coldstart.metrics), _read(p.rl.metrics)
    priv = _read(Path(p.audit.report).with_suffix(".json"))
    s = {"real_only_mAP": ref.get("mAP_mean"), "real_only_rank1": ref.get("rank1_mean"),
         "downstream_mAP": down.get("mAP_mean"), "downstream_rank1": down.get("rank1_mean"),
         "mAP_gain": down.get("mAP_gain"), "rank1_gain": down.get("rank1_gain"),
         "real_only_avg_acc": ref.get("avg_acc_mean"), "downstream_avg_acc": down.get("avg_acc_mean"),
         "avg_acc_gain": down.get("avg_acc_gain"), "real_only_to": ref.get("to_mean"), "downstream_to": down.get("to_mean"),
         "coldstart_top1": cs.get("after", {}).get("top1"),
         "rl_top1_before": rl.get("before", {}).get("top1"), "rl_top1_after": rl.get("after", {}).get("top1"),
         "rl_top1_change_se": rl.get("se", {}).get("top1"), "rl_r_sem_after": rl.get("after", {}).get("r_sem"),
         "synthetic_images": synth.get("samples"), "accepted": synth.get("accepted"),
         "accept_rate": synth.get("accept_rate"), "near_copy_rate": priv.get("copy", {}).get("rate"),
         "mia_loss_auc": priv.get("mia", {}).get("loss", {}).get("auc"),
         "mia_shard_auc": priv.get("mia", {}).get("shard", {}).get("auc"),
         "novel_leak_rate": priv.get("novel", {}).get("leak_rate"),
         "novel_pre_gate_rate": priv.get("novel", {}).get("pre_gate_rate")}
    s = {k: v for k, v in s.items() if v is not None}
    files = []
    if p.downstream.mix.synthetic and Path(p.downstream.mix.synthetic).exists() and Path(p.rl.bank).exists():
        shards = read_shards(p.downstream.mix.synthetic, accepted_only=False)
        bank, pids = load_memory_bank(p.rl.bank)
        files.append(str(embedding_plot(bank, pids.numpy(), shards.features, shards.labels.numpy(),
                                        p.report.embedding)))
    md = [f"# rgsyn pipeline report: {utility_line(util, down.get('shipped'))}", ""]
    if "avg_acc_mean" in ref:
        md += face_tables(p, ref, down) + [""]
    md += ["| | value |", "| --- | --- |"]
    md += [f"| {k} | {v:.4f} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in s.items()]
    n = ref.get("n_seeds")
    md += ["", f"Real only = `{p.reference.metrics}` on the downstream stage's {n} seed{'' if n == 1 else 's'}; "
           f"utility check = `{p.utility.metrics}`; real + synthetic = "
           f"`{p.downstream.metrics}` (share {p.downstream.mix.share} of "
           f"{'the accepted samples' if p.downstream.mix.accepted_only else 'every sample'}, "
           f"selection {p.downstream.selection.mode} "
           f"keeping {p.downstream.selection.ratio}); identity consistency (top-1) read by the "
           f"{rl.get('judge', cs.get('judge', 'reference'))} encoder; privacy audit: "
           f"`{Path(p.audit.report).with_suffix('.md')}`; embedding plot: `{p.report.embedding}`."]
    path = Path(p.report.markdown)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(md) + "\n")
    files.insert(0, str(path))
    return {"summary": s, "files": files}


if __name__ == "__main__":  # python -m rgsyn.report --readme | --rescore [params.yaml]
    import sys

    if sys.argv[1:2] == ["--readme"]:
        print("README.md", "updated" if update_readme() else "unchanged")
    elif sys.argv[1:2] == ["--rescore"]:
        from rgsyn.ablation import NOTES
        from rgsyn.config import load_params

        params = load_params(sys.argv[2] if len(sys.argv) > 2 else "params.yaml")
        rescore(params.ablation.report, params, NOTES)
