"""The dataset card of a release folder (synth.out_dir, audit.novel_out_dir): Hugging Face's `README.md`
with YAML metadata beside the `data/` shards, so that the folder says by itself what made it, from which
data, with which params, and what the privacy audit found; `datasets.load_dataset(<folder>)` reads the
shards through the card's `configs`.

Every figure is read from files when the card is written, none is typed in: rows, counts and
provenance from the shards and their manifest, the audit's sections verbatim from `audit.report`.json,
the source dataset's counts from `data.summary`, the generator from its checkpoint folders, the DVC
stage hashes from the lock file of the running `dvc repro`. The privacy stage writes both cards after
its report (`write_cards`); `python -m rgsyn.synth.card [params.yaml]` writes them again from the same
files, e.g. after a change of `release.license`.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import yaml

from rgsyn.config import Params, json_hash
from rgsyn.synth import schema
from rgsyn.synth.run import content_hash, content_params, generator_chain, model_files, reward_params

CARD = "README.md"
SHARD_GLOB = "shard-*.parquet"  # the card's `configs`: the files `datasets` reads as the train split
UPSTREAM = ("data", "prior", "auditor", "backbone", "reference", "coldstart", "rl", "synthesize")  # stages behind a release
DIT_KEYS = ("_class_name", "num_layers", "num_attention_heads", "attention_head_dim", "patch_size", "sample_size",
            "in_channels", "num_embeds_ada_norm")
SIZES = ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
         (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"))


def size_category(n: int) -> str:
    """Hugging Face's `size_categories` value of n rows."""
    return next((name for limit, name in SIZES if n < limit), "n>100M")


def yaml_features(dim: int) -> list[dict]:
    """The shard schema's features (schema.hf_features) as the card's `dataset_info.features` list."""
    out = []
    for name, f in schema.hf_features(dim).items():
        if f["_type"] == "Image":
            out.append({"name": name, "dtype": "image"})
        elif f["_type"] == "List":
            out.append({"name": name, "list": f["feature"]["dtype"], "length": f["length"]})
        else:
            out.append({"name": name, "dtype": f["dtype"]})
    return out


def dvc_stage_hashes(environ=os.environ) -> dict:
    """{stage: {output: md5}} of the stages behind a release, from the lock file of the pipeline whose
    stage is running: `dvc repro` names it in DVC_STAGE (`privacy`, `face/dvc.yaml:privacy`) and DVC_ROOT,
    and has locked every earlier stage by then. {} outside `dvc repro`."""
    stage, root = environ.get("DVC_STAGE", ""), environ.get("DVC_ROOT", "")
    if not stage or not root:
        return {}
    lock = Path(root) / Path(stage.rpartition(":")[0] or "dvc.yaml").with_name("dvc.lock")
    stages = (yaml.safe_load(lock.read_text()) or {}).get("stages", {}) if lock.exists() else {}
    return {name: {o["path"]: o.get("md5", "") for o in stages[name].get("outs", [])}
            for name in UPSTREAM if name in stages}


def _dit_config(folder: Path) -> dict:
    cfg = next((f for f in (folder / "transformer" / "config.json", folder / "config.json") if f.exists()), None)
    return {k: v for k, v in json.loads(cfg.read_text()).items() if k in DIT_KEYS} if cfg else {}


def generator_info(checkpoint: str | Path) -> dict:
    """The generator's chain ([rl,] coldstart, base DiT) with a content hash per folder, and the base
    DiT's architecture."""
    chain = generator_chain(checkpoint)
    links = [{"path": str(d), "hash": content_hash(model_files(checkpoint, [d]))} for d in chain]
    return {"checkpoint": str(checkpoint), "hash": content_hash(model_files(checkpoint)), "chain": links,
            "base_dit": {**links[-1], **_dit_config(chain[-1])}}


def _shards(release: Path) -> tuple[dict, list[Path]]:
    stray = sorted(f.name for f in release.iterdir() if f.name not in (CARD, schema.SHARD_DIR, ".gitignore"))
    if stray:  # the folder is what a user ships and what later stages hash: the card must describe all of it
        raise ValueError(f"{release}: {stray[:3]} are not part of the release (its {CARD} and {schema.SHARD_DIR}/); "
                         "move or delete them, then run the privacy stage again")
    folder = schema.shard_dir(release)
    manifest = schema.read_manifest(folder)
    if manifest is None:
        raise FileNotFoundError(f"{folder / schema.MANIFEST}: missing, so {release} holds no finished synthesis; "
                                "run the synthesize stage (dvc repro synthesize) before the privacy stage")
    files = [folder / e["file"] for e in manifest["shards"]]
    extra = sorted({f.name for f in folder.glob(SHARD_GLOB)} - {f.name for f in files})
    if extra:  # `datasets` reads every file of the configs' glob: the split's counts must cover all of them
        raise ValueError(f"{folder}: {extra[:3]} are not shards of its {schema.MANIFEST}; move or delete them, "
                         "then run the privacy stage again")
    return manifest, files


def hf_layout(files: list[Path]) -> dict:
    """The card's keys that `datasets` reads: `configs` (every shard-*.parquet of data/ is the train
    split) and `dataset_info` as Hugging Face's card spec states it: the features, and the train split's
    name, num_examples (every row of those shards; `datasets` checks it against what it reads) and
    num_bytes (the Arrow bytes of those rows, what `datasets` records as it prepares the split),
    download_size (the Parquet files' bytes) and dataset_size (the splits' num_bytes)."""
    rows = sum(pq.read_metadata(f).num_rows for f in files)
    arrow = sum(pq.read_table(f).nbytes for f in files)
    return {"configs": [{"config_name": "default",
                         "data_files": [{"split": "train", "path": f"{schema.SHARD_DIR}/{SHARD_GLOB}"}]}],
            "dataset_info": {"features": yaml_features(pq.read_schema(files[0]).field("features").type.list_size),
                             "splits": [{"name": "train", "num_bytes": arrow, "num_examples": rows}],
                             "download_size": sum(f.stat().st_size for f in files), "dataset_size": arrow}}


def card_metadata(p: Params, release: str | Path, report: dict) -> dict:
    """The card's YAML header for the release at `release`, made with params `p` (its synth section is
    the release's own: augment, or novel for the novel release), `report` the privacy report."""
    release = Path(release)
    manifest, files = _shards(release)
    generator = generator_info(manifest["generator_ckpt"])
    now = {"params_hash": json_hash(content_params(p)), "reward_hash": json_hash(reward_params(p)),
           "generator_hash": generator["hash"]}
    for key, value in now.items():  # the card describes the params and generator as they are now
        if manifest["provenance"][key] != value:
            raise ValueError(f"{schema.shard_dir(release) / schema.MANIFEST}: provenance.{key} "
                             f"{manifest['provenance'][key]} is not {value}, that of the params file and the "
                             "generator now: the shards were made from other inputs; rerun the synthesize stage "
                             "(dvc repro synthesize), then the privacy stage")
    cols = [pq.read_table(f, columns=["label", "accepted"]) for f in files]
    labels = np.concatenate([t.column("label").to_numpy() for t in cols])
    accepted = np.concatenate([t.column("accepted").to_numpy(zero_copy_only=False) for t in cols]).astype(bool)
    summary = json.loads(Path(p.data.summary).read_text())
    face = "sets" in summary
    return {
        "license": p.release.license,
        "pretty_name": f"rgsyn synthetic {'face' if face else 're-id'} release ({manifest['mode']})",
        "task_categories": ["image-classification"],
        "tags": ["synthetic", "face-recognition" if face else "person-re-identification", "privacy-audit", "rgsyn"],
        "size_categories": [size_category(len(labels))],
        **hf_layout(files),
        "rgsyn": {
            "mode": manifest["mode"], "rows": int(len(labels)), "accepted": int(accepted.sum()),
            "identities": int(len(np.unique(labels))), "accepted_identities": int(len(np.unique(labels[accepted]))),
            "synthesis_id": manifest["synthesis_id"], "provenance": manifest["provenance"],
            "audit_thresholds": manifest["audit_thresholds"],
            "generator": generator,
            "params": {**content_params(p), "reward": reward_params(p)},
            "source_dataset": {**summary, "holdout_per_id": p.data.holdout_per_id},
            "dvc_stages": dvc_stage_hashes(),
            "privacy_audit": {"report": f"{p.audit.report}.json", **report},
        },
    }


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def _architecture(d: dict) -> str:
    if not set(DIT_KEYS) <= set(d):
        return "architecture not read (no diffusers config.json)"
    return (f"{d['_class_name']}, {d['num_layers']} layers of {d['num_attention_heads']} heads x "
            f"{d['attention_head_dim']}, patch {d['patch_size']}, {d['sample_size']}x{d['sample_size']} samples of "
            f"{d['in_channels']} channels, {d['num_embeds_ada_norm']} classes")


def _source(s: dict) -> list[str]:
    splits = [f"{k} {v['images']} images of {v['ids']} identities" for k, v in s.items()
              if isinstance(v, dict) and "images" in v]
    sets = ", ".join(s.get("sets", {})) if "sets" in s else ""
    return [f"Layout `{s['layout']}` at `{s['root']}`: " + "; ".join(splits) + "."
            + (f" Verification pair sets: {sets}." if sets else ""),
            f"`data.holdout_per_id` = {s['holdout_per_id']} image(s) per identity were kept out of generator "
            "training (the membership audit's non-members). No image of the source dataset is in this folder."]


def _audit(a: dict, r: dict) -> list[str]:
    c, m, n, pc = a["copy"], a["mia"], a["novel"], a["copy"]["positive_control"]
    ctrl = ", ".join(f"{k.replace('_', ' ')} {_pct(v)}" for k, v in pc.items() if k != "n")
    own = n["synth"] if r["mode"] == "novel" else {"near_copy_rate": c["rate"], "samples": c["n"]}
    rate = f"{_pct(own['near_copy_rate'])} of the {own['samples']} rows"
    aud = a["auditor"]
    lines = [f"Figures of `{a['report']}` (the privacy stage), all of which the `rgsyn.privacy_audit` metadata above "
             f"holds. Auditor: `{aud['encoder']}` (trained on `{aud.get('dataset', 'its own')}` identities), "
             "independent of the reward's encoder.", "",
             f"- **Near-copies: {rate}.** A sample is a near-copy when it is closer to a training image than the "
             f"{c['quantile']} quantile of two different real shots of one person (pixel correlation "
             f"{c['threshold']:.3f}, auditor cosine {c['feature_threshold']:.3f}). Positive control on "
             f"{pc['n']} training images, share flagged: {ctrl}; a resize round trip returns the training image "
             "itself, so a rule that works flags it.",
             f"- **Membership inference** ({m['members']} training vs {m['nonmembers']} held-out images of the same "
             "identities; AUC 0.5 = an attacker does no better than a coin, 1 = always right; TPR at 1 % FPR = the "
             "share of training images an attacker names while wrongly naming 1 % of the others):", "",
             "  | attack | needs | ROC-AUC [95 % CI] | TPR at 1 % FPR |", "  | --- | --- | --- | --- |"]
    for k, needs in (("loss", "the generator's weights"), ("shard", "these shards only")):
        lines.append(f"  | {k} | {needs} | {m[k]['auc']:.3f} [{m[k]['auc_ci'][0]:.3f}, {m[k]['auc_ci'][1]:.3f}] | "
                     f"{_pct(m[k]['tpr_at_fpr_0.01'])} |")
    lines += ["",
              f"- **Identity consistency**: {_pct(a['consistency']['rate_all'])} of the augment release's samples "
              "are recognised as their own identity by the auditor (the acceptance gate).",
              f"- **Novel identities**: of {n['generated']} generated, {n['leaked']} of the {n['screened']} with "
              f"images the other gates accept matched a real identity before the 1:N gate (their auditor prototype "
              f"over those images, FPIR {n['fpir']:g}, threshold {n['threshold']:.3f}), and the gate released none "
              f"of them; **leak rate of the kept {n['kept']} by the same rule on their released images: "
              f"{_pct(n['leak_rate'])}**. Other measures, which the gate does not apply: split half "
              f"{_pct(n['split_half_rate'])} (either half of an identity's released images alone matches), the "
              f"reference encoder {_pct(n['reference']['rate'])} (against its wrong-identity baseline "
              f"{_pct(n['reference']['baseline_rate'])})."]
    return lines


LIMITS = [
    "- Rows with `accepted` false are in the shards, and they include the near-copies: share only the accepted "
    "rows (`filter` on `accepted`) when the real data may not leave your hands.",
    "- In augment mode every sample is made to look like a real person of the source data, and `label` is that "
    "person's identity id: the release is data about those people and says which identities the source "
    "holds.",
    "- The audit sees what its auditor sees: a matcher stronger than the auditor may match more samples to real "
    "people. No figure here is a formal guarantee (no differential privacy).",
    "- Membership figures hold for this generator and this data size; with few held-out images the TPR at 1 % "
    "FPR is coarse. The loss attack needs the generator's weights: keep them private.",
    "- `features` is the reference encoder's embedding of each sample and `nn_real_sim` its highest cosine to a "
    "real training image: both come from a model trained on the real images.",
]


def render(meta: dict) -> str:
    """The card: YAML header + the body a reader needs, from card_metadata's dict."""
    r = meta["rgsyn"]
    g, prov = r["generator"], r["provenance"]
    what = ("more images of the source dataset's real identities" if r["mode"] == "augment"
            else "new identities, none meant to match a real person")
    body = [f"# {meta['pretty_name']}", "",
            f"Synthetic identity images ({what}): {r['rows']} rows of {r['identities']} identities; the privacy audit "
            f"accepted {r['accepted']} rows of {r['accepted_identities']} identities. Made by rgsyn, an "
            "implementation of \"Reinforcement-Guided Synthetic Data Generation for Privacy-Sensitive Identity "
            "Recognition\" (Jia et al., arXiv:2604.07884).", "",
            "## Load", "", "```python", "from datasets import load_dataset", "",
            "ds = load_dataset(\"<this folder>\", split=\"train\")",
            "accepted = ds.filter(lambda row: row[\"accepted\"])  # the rows the audit accepted", "```", "",
            f"`{schema.SHARD_DIR}/` holds the zstd Parquet shards and their `{schema.MANIFEST}` (row counts, sha256). "
            "Columns: `image` (PNG), `label` (identity), `seed`, `features` (reference-encoder embedding), the "
            "reward `r_sem`, `r_cov`, `r_exp`, `reward`, the audit's `copy_pixel_sim`, `copy_feature_sim`, "
            "`near_copy`, `consistent`, `identity_leak_sim`, and `accepted`.", "",
            "## How it was made", "",
            f"- Generator `{g['checkpoint']}` (content hash `{g['hash']}`), the chain "
            + ", ".join(f"`{c['path']}` (`{c['hash']}`)" for c in g["chain"]) + ".",
            f"- Base DiT `{g['base_dit']['path']}` (`{g['base_dit']['hash']}`): {_architecture(g['base_dit'])}.",
            f"- Code: git `{prov['git_sha']}`; synthesis id `{r['synthesis_id']}` (params hash "
            f"`{prov['params_hash']}`, reference encoder `{prov['encoder_hash']}`, auditor `{prov['auditor_hash']}`, "
            f"memory bank `{prov['bank_hash']}`).",
            "- Params that shape the samples:", "", "```yaml", yaml.safe_dump(r["params"], sort_keys=True).rstrip(),
            "```", ""]
    if r["dvc_stages"]:
        body += ["DVC outputs of the stages behind this release, as `dvc.lock` held them when the card was written "
                 "(`dvc status` says whether they still hold):", "", "| stage | output | md5 |", "| --- | --- | --- |"]
        body += [f"| {s} | `{path}` | `{md5}` |" for s, outs in r["dvc_stages"].items() for path, md5 in outs.items()]
    else:
        body.append("Written outside `dvc repro`: no DVC stage hashes (`dvc repro privacy` writes them).")
    body += ["", "## Source dataset", "", *_source(r["source_dataset"]), "",
             "## Privacy audit", "", *_audit(r["privacy_audit"], r), "", "## Limits", "", *LIMITS, ""]
    return "---\n" + yaml.safe_dump(meta, sort_keys=False, allow_unicode=True) + "---\n\n" + "\n".join(body)


def write_card(p: Params, release: str | Path, report: dict) -> Path:
    path = Path(release) / CARD
    path.write_text(render(card_metadata(p, release, report)))
    return path


def write_cards(p: Params) -> list[Path]:
    """The cards of the augment release (synth.out_dir) and the novel one (audit.novel_out_dir), from
    the files the synthesize and privacy stages wrote."""
    from rgsyn.privacy.novel import novel_release

    report_file = Path(f"{p.audit.report}.json")
    if not report_file.exists():
        raise FileNotFoundError(f"{report_file}: the privacy report is missing (params: audit.report); the card "
                                "carries its figures: run the privacy stage (dvc repro privacy)")
    report = json.loads(report_file.read_text())
    return [write_card(p, p.synth.out_dir, report), write_card(novel_release(p), p.audit.novel_out_dir, report)]


if __name__ == "__main__":  # python -m rgsyn.synth.card [params.yaml]: both cards again, from the files
    import sys

    from rgsyn.config import load_params

    print("\n".join(str(f) for f in write_cards(load_params(sys.argv[1] if len(sys.argv) > 1 else "params.yaml"))))
