"""The `coldstart` stage (paper §4.1): adapt a pretrained DiT to the target identities.

The label table is replaced by one shared, zero-initialised table (one row per train identity + the
null row), the backbone stays frozen, and only the table learns from the denoising loss on the real
train images (`coldstart.tune: table`). The result is a small file (the table) beside a pointer to the
pretrained folder. Beyond the paper, `coldstart.init: nearest` starts each identity's row at the
pretrained class whose samples its member images resemble most (`mean`: at the mean class row), with
the pretrained null row, instead of zero; `tune: lora` or `full` trains LoRA adapters or every tensor
beside the table at `coldstart.body_lr`; their tensors (rgsyn.generator.adapters) are merged back on
loading.
The generator learns from the member images only (`data.holdout_per_id` held out for membership
inference). Identity consistency before and after (rgsyn.identity: is a sample's nearest real
identity prototype its own?) is read by the audit's independent encoder when present, else by the
reference encoder, on samples of the shipping sampler (params `sampler`), and so is their fidelity
against the truth (rgsyn.eval.fidelity: per-identity precision, recall, kernel distance, CAS). From
the embedded prior, the prior itself is read the same way on its own training classes (`fidelity.prior`):
the ceiling the label table can reach without moving the backbone.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from rgsyn.config import ColdstartParams, Params, SamplerParams, params_hash, to_dict
from rgsyn.data.images import load_images
from rgsyn.data.layouts import member_split
from rgsyn.data.records import relabel
from rgsyn.devices import configure, resolve_device
from rgsyn.encoder import extract_features, load_encoder
from rgsyn.eval.fidelity import generator_fidelity, prior_reference
from rgsyn.generator.adapters import TABLE, adapter_state, load_adapter_state, make_trainable
from rgsyn.generator.dit import DiTBundle, label_tables, load_dit, null_label, reset_class_embedding
from rgsyn.generator.sampler import Sampler, per_sample_seeds
from rgsyn.generator.train import train_denoiser, trainable
from rgsyn.generator.viz import labelled_grid
from rgsyn.identity import make_judge, nearest_prototype, prototypes
from rgsyn.provenance import git_sha

TABLE_FILE = "label_table.safetensors"
META_FILE = "coldstart.json"
ADAPTER_FILE = "adapter.safetensors"  # tune lora / full: what learned beside the table


def image_size(bundle: DiTBundle) -> tuple[int, int]:
    """(H, W) of the images the generator makes: packed pixels, or latents through the VAE (x8 for DiT's)."""
    s = bundle.transformer.config.sample_size
    if bundle.vae is not None:
        f = 2 ** (len(bundle.vae.config.block_out_channels) - 1)
        return s * f, s * f
    return s * bundle.pack, s


def save_coldstart(bundle: DiTBundle, out_dir: str | Path, pretrained: str, pids: list[int], tune: str = "table",
                   lora_rank: int = 0, lora_targets: list[str] = (), **meta) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    table = label_tables(bundle.transformer)[0].embedding_table.weight
    save_file({"embedding_table": table.detach().cpu().contiguous()}, str(out / TABLE_FILE))
    if tune != "table":
        state = {k: v for k, v in adapter_state(bundle.transformer, tune == "full").items() if k != TABLE}
        save_file(state, str(out / ADAPTER_FILE))
    (out / META_FILE).write_text(json.dumps({"pretrained": str(pretrained), "pids": pids, "tune": tune,
                                             "lora_rank": lora_rank, "lora_targets": list(lora_targets),
                                             "git_sha": git_sha(), **meta}, indent=1, default=str))
    return out


def load_coldstart(path: str | Path) -> tuple[DiTBundle, list[int]]:
    """-> (bundle with the target label table in place and any adapters merged, class index -> dataset pid)."""
    path = Path(path)
    if not (path / META_FILE).exists():
        raise FileNotFoundError(f"{path / META_FILE} not found: run the coldstart stage (dvc repro coldstart)")
    meta = json.loads((path / META_FILE).read_text())
    bundle = load_dit(meta["pretrained"])
    reset_class_embedding(bundle.transformer, len(meta["pids"]))
    with torch.no_grad():
        table = load_file(str(path / TABLE_FILE))["embedding_table"]
        label_tables(bundle.transformer)[0].embedding_table.weight.copy_(table)
    tune = meta.get("tune", "table")
    if tune != "table":
        state = {**load_file(str(path / ADAPTER_FILE)), TABLE: table}
        bundle.transformer = load_adapter_state(bundle.transformer, state, meta["lora_rank"], tune == "full",
                                                merge=True, lora_targets=meta["lora_targets"])
        bundle.transformer.requires_grad_(False)  # as reset_class_embedding leaves it: the table alone learns
        label_tables(bundle.transformer)[0].embedding_table.weight.requires_grad_(True)
    return bundle, meta["pids"]


@torch.no_grad()
def generate(bundle: DiTBundle, labels: torch.Tensor, sp: SamplerParams, seed: int, precision: str = "fp32") -> torch.Tensor:
    """uint8 images (N, 3, H, W) for `labels` with the shipping sampler, one noise stream per sample."""
    sampler = Sampler.from_params(bundle, sp, precision)
    return sampler.images(labels, per_sample_seeds(seed, len(labels)))


def nearest_classes(protos: torch.Tensor, class_feats: torch.Tensor, class_labels: torch.Tensor,
                    num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """For each identity prototype (n, D), the pretrained class whose samples' prototype is the most
    similar: class_feats (M, D) of class_labels (M,) in 0..num_classes-1 -> (classes (n,), cosines (n,))."""
    best, sim = nearest_prototype(protos, prototypes(class_feats, class_labels, num_classes))  # sim (n, C)
    return best, sim.gather(1, best[:, None]).squeeze(1)


def initial_rows(bundle: DiTBundle, c: ColdstartParams, class_samples: tuple | None, encoder, real: torch.Tensor,
                 labels: torch.Tensor, n: int) -> tuple[torch.Tensor | None, dict]:
    """The new table's first rows (n + 1, D) by `coldstart.init` and what chose them. zero: None (the paper's
    all-zero table). mean: every identity at the mean of the pretrained class rows. nearest: identity i at
    the pretrained class whose samples (`class_samples` = (uint8 images, classes), drawn with the shipping
    sampler) lie nearest the prototype of i's member images `real` in the reference encoder's space. Both
    keep the pretrained null row: guidance starts from the pretrained model's own unconditional branch."""
    if c.init == "zero":
        return None, {"init": "zero"}
    old = label_tables(bundle.transformer)[0].embedding_table.weight.detach().cpu()  # (C + 1, D), null last
    classes, null = old[:-1], old[-1:]
    if c.init == "mean":
        return torch.cat([classes.mean(0, keepdim=True).expand(n, -1), null]), {"init": "mean"}
    images, cls = class_samples
    protos = prototypes(extract_features(encoder, real), labels, n)  # (n, D)
    best, cos = nearest_classes(protos, extract_features(encoder, images), cls, len(classes))
    return torch.cat([classes[best], null]), {"init": "nearest", "classes": best.tolist(), "cosine": float(cos.mean()),
                                              "distinct": len(set(best.tolist())), "per_class": c.init_per_class}


def new_identities(bundle: DiTBundle, n: int, c: ColdstartParams, rows: torch.Tensor | None = None) -> None:
    """Give the model a table of `n` identities (+ the null row), all-zero or `rows`, and make trainable
    what `c.tune` names beside it. Fresh adapters start at B = 0, so the model is the new table's."""
    reset_class_embedding(bundle.transformer, n, rows)
    if c.tune != "table":
        make_trainable(bundle.transformer, c.lora_rank, c.tune == "full", c.lora_targets, c.seed)


def adapt(bundle: DiTBundle, images: torch.Tensor, labels: torch.Tensor, c: ColdstartParams, device, precision: str,
          ckpt_dir: Path | None = None, log=None, progress: bool = True) -> float:
    """Train what new_identities made trainable on (uint8 images (N, 3, H, W), class indices (N,)) with the
    denoising loss, per `coldstart` params; leaves the EMA weights in the model -> seconds trained."""
    t0 = time.time()
    ema = train_denoiser(bundle, images, labels, steps=c.steps, batch=c.batch, lr=c.lr, weight_decay=0.0,
                         warmup=c.warmup, ema_decay=c.ema_decay, label_dropout=c.label_dropout, seed=c.seed,
                         flip=c.flip, ckpt_dir=ckpt_dir, ckpt_every=c.ckpt_every, config=to_dict(c), log=log,
                         progress=progress, device=device, precision=precision,
                         body_lr=None if c.tune == "table" else c.body_lr)
    ema.copy_to(trainable(bundle.transformer).values())
    return time.time() - t0


def run_coldstart(params: Params, log=None, progress: bool = True) -> dict:
    c, prec = params.coldstart, params.compute.precision
    configure(params.compute)
    device = resolve_device(c.device)
    bundle = load_dit(c.pretrained)
    members, _ = member_split(params.data)
    labels, table = relabel([r.pid for r in members])
    labels = torch.from_numpy(labels)
    h, w = image_size(bundle)
    images = load_images([r.path for r in members], h, w)  # (N, 3, H, W) uint8
    prior_samples = class_samples = None
    if Path(c.pretrained) == Path(params.prior.out_dir):  # the embedded prior: its own classes have a truth
        prior_labels = torch.arange(min(len(table), params.prior.num_classes)).repeat_interleave(c.eval_per_id)
        prior_samples = generate(bundle.to(device), prior_labels, params.sampler, c.eval_seed, prec)
    encoder = load_encoder(params.reference.out_dir, device)
    real = load_images([r.path for r in members], encoder.cfg.height, encoder.cfg.width)  # the judge's own size
    if c.init == "nearest":  # every pretrained class, with the sampler that ships
        cls = torch.arange(null_label(bundle.transformer)).repeat_interleave(c.init_per_class)
        class_samples = (generate(bundle.to(device), cls, params.sampler, c.eval_seed + 1, prec), cls)
    rows, init = initial_rows(bundle, c, class_samples, encoder, real, labels, len(table))
    new_identities(bundle, len(table), c, rows)
    bundle.to(device)
    judge = make_judge(params, encoder, real, labels, len(table))
    eval_labels = torch.arange(len(table)).repeat_interleave(c.eval_per_id)
    before = generate(bundle, eval_labels, params.sampler, c.eval_seed, prec)
    train_s = adapt(bundle, images, labels, c, device, prec, Path(c.out_dir) / "train_state", log, progress)
    fake = generate(bundle, eval_labels, params.sampler, c.eval_seed, prec)
    score = lambda x: {k: v for k, v in judge(x, eval_labels).items() if k != "hits"}  # noqa: E731
    fidelity = generator_fidelity(judge, params, sorted(table), {"before": (before, eval_labels), "after": (fake, eval_labels)})
    if prior_samples is not None:  # the generator cold start starts from, on the classes it was trained on
        n = int(prior_labels.max()) + 1
        fidelity["prior"] = generator_fidelity(judge, params, list(range(n)), {"own_classes": (prior_samples, prior_labels)},
                                               reference=lambda h, w: prior_reference(params, n, h, w))["own_classes"]
    save_coldstart(bundle, c.out_dir, c.pretrained, sorted(table), c.tune, c.lora_rank, c.lora_targets,
                   steps=c.steps, params_hash=params_hash(c))
    shown = range(min(c.grid_ids, len(table)))
    rows = [[images[labels == i][:4], fake[eval_labels == i][:4]] for i in shown]
    sp = params.sampler
    grid = labelled_grid(rows, c.grid, [("real", 4), ("generated", min(4, c.eval_per_id))],
                         row_labels=[f"id {sorted(table)[i]}" for i in shown],
                         title=f"cold start: {sp.steps} {sp.spacing} steps, eta {sp.eta:g}, guidance {sp.guidance:g}")
    return {"before": score(before), "after": score(fake), "judge": judge.name, "fidelity": fidelity, "train_seconds": train_s,
            "init": init, "grid": str(grid)}
