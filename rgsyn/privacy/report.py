"""reports/privacy.md and .png: the audit's numbers in words a user can act on, and the distributions
behind every threshold (calibration vs samples, ROC curves of both attacks, novel identities)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from rgsyn import stats


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def write_markdown(r: dict, path: Path) -> Path:
    c, m, n = r["copy"], r["mia"], r["novel"]
    ref = n["reference"]
    pc = c["positive_control"]
    ctrl = ", ".join(f"{k.replace('_', ' ')} {_pct(v)}" for k, v in pc.items() if k != "n")
    lines = [
        "# Privacy audit", "",
        f"Auditor: `{r['auditor']['encoder']}` (independent of the reward's encoder).", "",
        "## Does the release replicate my training images?", "",
        f"- Near-copies: **{_pct(c['rate'])}** of {c['n']} samples (pixels {_pct(c['rate_pixel'])}, auditor "
        f"features {_pct(c['rate_feature'])}); a sample is a near-copy when it is closer to a training image than "
        f"the {c['quantile']} quantile of real same-identity nearest other shots (pixel correlation "
        f"{c['threshold']:.3f}, auditor cosine {c['feature_threshold']:.3f}).",
        f"- Positive control ({pc['n']} training images, share flagged): {ctrl}.", "",
        "## Can someone tell which images I trained on?", "",
        f"{m['members']} member vs {m['nonmembers']} held-out images of the same identities "
        "(AUC 0.5 = chance, 1 = always right).", "",
        "| attack | needs | ROC-AUC [95 % CI] | TPR at 1 % FPR |", "| --- | --- | --- | --- |",
    ]
    for k, needs in (("loss", "the generator's weights"), ("shard", "the shards only")):
        a = m[k]
        lines.append(f"| {k} | {needs} | {a['auc']:.3f} [{a['auc_ci'][0]:.3f}, {a['auc_ci'][1]:.3f}] | "
                     f"{_pct(a['tpr_at_fpr_0.01'])} |")
    lines += ["", "## Identity consistency (the gate)", "",
              f"- Consistent (auditor top-1 is the own identity and in its largest cluster): "
              f"{_pct(r['consistency']['rate_all'])} of all samples, {_pct(r['consistency']['rate_accepted'])} "
              f"of the {r['consistency']['accepted']} accepted.", "",
              "## Novel identities", "",
              f"- {n['generated']} generated, {n['screened']} with images that the other gates accept. One rule "
              f"decides a leak: the identity's auditor prototype over those images matches a real identity 1:N "
              f"(FPIR {n['fpir']:g}, threshold {n['threshold']:.3f}). Before the gate {n['leaked']} of the "
              f"{n['screened']} leak ({_pct(n['pre_gate_rate'])}); the gate releases none that leak: {n['kept']} kept.",
              f"- **Leak rate of the release: {_pct(n['leak_rate'])}** of the kept identities ({n['leaked_kept']}) "
              "leak by the same rule on their released images: zero by construction of the gate, recomputed "
              "here from the shards.",
              "- Other measures, which the gate does not apply (not leak rates of the same rule):",
              f"  - split half (either half of a kept identity's released images alone, a second draw of the "
              f"person): {_pct(n['split_half_rate'])} ({n['split_half_leaked']});",
              f"  - insider second opinion (the reference encoder, trained on the real identities, at its own FPIR "
              f"{n['fpir']:g} threshold {ref['threshold']:.3f}): {_pct(ref['rate'])} of the kept identities match a "
              f"real one; the same encoder matches {_pct(ref['baseline_rate'])} of generated *real* identities to a "
              f"wrong real identity ({ref['baseline_n']} identities), so read the first figure against the second.", ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
    return path


def write_plot(d: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 4, figsize=(17, 3.8))
    for i, space in enumerate(("pixel", "feature")):
        cal = d["calibration"][space]
        cal = cal[np.isfinite(cal)]
        bins = np.linspace(min(cal.min(), np.nanmin(d["samples"][space])) - 0.02, 1.0, 60)
        ax[i].hist(cal, bins, density=True, alpha=0.6, label="real: nearest other shot, same identity")
        ax[i].hist(d["samples"][space], bins, density=True, alpha=0.6, label="synthetic: nearest training image")
        ax[i].axvline(d["thresholds"][space], color="k", ls="--", label="near-copy threshold")
        ax[i].set_xlabel("pixel correlation" if space == "pixel" else "auditor cosine")
        ax[i].set_title(f"near-copies ({space})")
        ax[i].legend(fontsize=7)
    for k, (pos, neg) in d["mia"].items():
        fpr, tpr = stats.roc(pos, neg)
        ax[2].plot(fpr, tpr, label=f"{k} attack")
    ax[2].plot([0, 1], [0, 1], color="grey", ls=":")
    ax[2].set_xlabel("FPR (held-out called member)")
    ax[2].set_ylabel("TPR")
    ax[2].set_title("membership inference ROC")
    ax[2].legend(fontsize=7)
    ident = d["calibration"]["identity"]
    leak = d["novel"][np.isfinite(d["novel"])]
    bins = np.linspace(min(ident.min(), leak.min() if len(leak) else 1) - 0.02, 1.0, 50)
    ax[3].hist(ident, bins, density=True, alpha=0.6, label="real identity -> nearest other real")
    if len(leak):
        ax[3].hist(leak, bins, density=True, alpha=0.6, label="novel identity -> nearest real")
    ax[3].axvline(d["thresholds"]["identity"], color="k", ls="--", label="1:N leak threshold")
    ax[3].set_xlabel("prototype cosine (auditor)")
    ax[3].set_title("novel identities")
    ax[3].legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
