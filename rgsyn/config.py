"""params.yaml -> frozen dataclasses, one per pipeline stage.

The file is checked strictly (nanoGPT-style): a key the dataclass does not know, a key it needs that
the file lacks, or a value of the wrong type is an error that names the file, the key and the fix.
Every stage reads only its own section, so `dvc.yaml` can list exact params keys per stage.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml

DEFAULT_PARAMS = Path("params.yaml")


class ConfigError(ValueError):
    """params.yaml does not match the schema below."""


@dataclass(frozen=True)
class EmbeddedParams:
    """The procedural re-id set (rgsyn/data/procedural/render.py)."""

    height: int
    width: int
    num_train_ids: int
    num_test_ids: int
    num_distractors: int
    num_cameras: int
    train_images_min: int
    train_images_max: int
    zipf_a: float  # long tail: images per train id ~ Zipf(a) clipped to [min, max]
    test_images_per_id: int
    occlusion_prob: float
    noise_std: float


@dataclass(frozen=True)
class FaceDataParams:
    """The procedural face set (rgsyn/data/procedural/faces.py, face_pairs.py); ignored for other layouts."""

    size: int  # square images (112 for insightface-sized crops)
    num_train_ids: int
    train_images_min: int
    train_images_max: int
    zipf_a: float
    num_test_ids: int  # the pool every pair set draws its (disjoint) identities from
    folds: int
    pairs_per_fold: int
    occlusion_prob: float


@dataclass(frozen=True)
class DataParams:
    layout: str  # re-id: embedded | market1501 | cuhk03np-labeled | cuhk03np-detected; faces: embedded-face | imagefolder | recordio
    root: str  # dataset root; for `embedded`, where it is rendered
    index: str  # Parquet manifest written by the data stage
    summary: str  # JSON summary of the splits, written beside the index
    seed: int  # rendering and the membership hold-out draw
    check_images: bool
    holdout_per_id: int  # train images per identity (with >= 2) kept out of generator training (membership inference)
    sets: list[str]  # faces: verification pair sets, <root>/<name>.bin (insightface format)
    groups: list[str]  # faces: demographic group pair sets, <root>/<name>.bin (RFW-like)
    embedded: EmbeddedParams
    face: FaceDataParams


@dataclass(frozen=True)
class TrainParams:
    """The recognition trainer: re-id (BoT: CE + hard-mining triplet, BNNeck, Adam) or faces (CosFace,
    SGD), both on P×K batches."""

    backbone: str  # any timm name: resnet50, vit_base_patch16_224, or a tiny CPU net
    pretrained_path: str  # local weights for the backbone ("" = random init; no downloads)
    embed_dim: int  # 0 = backbone's own feature width
    height: int
    width: int
    p: int  # identities per batch
    k: int  # images per identity
    epochs: int
    iters_per_epoch: int  # 0 = len(train) // (p * k), at least 1
    lr: float
    weight_decay: float
    warmup_epochs: int
    loss: str  # reid (CE + triplet, BNNeck head) | cosface (normalised head, scale + additive cosine margin)
    optimizer: str  # adam | sgd (momentum)
    momentum: float  # sgd only
    margin: float  # triplet margin; 0 = soft margin
    cos_scale: float  # CosFace s
    cos_margin: float  # CosFace m
    label_smoothing: float
    flip: bool
    pad: int  # random-crop padding in pixels
    random_erasing: float
    eval_batch: int
    ema: float  # decay of the weights' exponential moving average that is evaluated and saved; 0 = the last iterate
    device: str  # cpu | cuda | auto
    seeds: list[int]  # one run per seed; metrics are mean ± std over them


@dataclass(frozen=True)
class ReferenceParams:
    train: TrainParams
    out_dir: str  # checkpoints of the reference encoder (the first seed's model)
    val_out_dir: str  # the second seed's model: RL's validation encoder (early stopping)
    metrics: str  # metrics JSON for DVC


@dataclass(frozen=True)
class SelectionParams:
    """Dynamic sample selection (paper §4.3, eq 12; rgsyn/downstream/selection.py)."""

    mode: str  # off (every candidate trains) | fast (first-order) | exact (virtual step) | random (control)
    ratio: float  # fraction of the synthetic candidates kept per step
    scope: str  # fast mode's parameter subset: head | layer3 | layer4 | all
    lookahead: str  # the virtual step's loss: real (the batch's real rows) | mixed (real + candidates, eq 12 as printed)


@dataclass(frozen=True)
class MixParams:
    """Real + synthetic batches: the real P×K batch plus synthetic candidates drawn P×K-style."""

    synthetic: str  # shard folder (synth.out_dir); "" = real only
    novel: str  # shard folder of novel identities (synth.mode novel): extra classes; "" = none
    accepted_only: bool  # augment shards: only rows the audit accepted (novel shards always: the 1:N gate)
    share: float  # synthetic fraction of the batch a step trains on (selection draws 1/ratio x the candidates); 0 = real only
    curriculum: bool  # share goes from curriculum_start (early) to curriculum_end (late), cosine
    curriculum_start: float
    curriculum_end: float
    smoothing: float  # label smoothing of the synthetic rows' identity loss (1 = uniform target, LSRO); real rows: train's


@dataclass(frozen=True)
class DownstreamParams:
    train: TrainParams  # keep equal to reference.train so real-only vs mixed differ only in the data
    mix: MixParams
    selection: SelectionParams
    require_gain: bool  # ship the real-only model when the utility check's verdict is `hurts`
    out_dir: str  # the trained model (first seed)
    metrics: str  # metrics JSON for DVC


@dataclass(frozen=True)
class UtilityParams:
    """The utility check (rgsyn/downstream/utility.py): real only vs real + synthetic on held-out train
    identities, with the downstream trainer; never the test set."""

    folds: int  # the eligible train identities split into this many folds, each held out once (≥ 2)
    seed: int  # which identities fall in which fold
    seeds: list[int]  # paired training seeds, each run on every fold
    workers: int  # trainings at once (single-threaded processes)
    metrics: str  # the verdict and the paired difference (JSON)

    def __post_init__(self):
        if self.folds < 2:
            raise ConfigError(f"`utility.folds` = {self.folds}: the check rotates the held-out identities over "
                              "at least 2 folds; set it to 2 or more.")
        if not self.seeds:
            raise ConfigError("`utility.seeds` is empty: the check needs at least one training seed.")


@dataclass(frozen=True)
class AblationParams:
    """The paper's ladder (Fig. 5) on top of the default pipeline's outputs (flows/ablation.py)."""

    seeds: list[int]
    workers: int  # jobs at once (Dask LocalCluster processes, one torch thread each)
    sem_weights: list[float]  # the `sem` rung's reward weights (R_sem only)
    cov_weights: list[float]  # the `cov` rung's (R_sem + R_cov)
    work_dir: str  # generators and shards of the rungs that the pipeline does not make
    report: str  # reports/ablation -> .md, .json, .png, _embedding.png


@dataclass(frozen=True)
class DiTParams:
    """A DiTTransformer2DModel's sizes (diffusers config names)."""

    num_layers: int
    num_attention_heads: int
    attention_head_dim: int
    patch_size: int


@dataclass(frozen=True)
class PriorParams:
    """General-domain pretraining of the default's DiT (rgsyn/generator/prior.py)."""

    out_dir: str  # the exported checkpoint, diffusers DiTPipeline layout (committed)
    ckpt_dir: str  # resumable training state
    grid: str  # sample grid PNG (real | generated)
    num_classes: int
    per_class: int
    num_cameras: int
    seed: int
    height: int  # the generator's image size; renders (data.embedded size) are resized to it
    width: int
    pack: int  # pixel space: vertical space-to-depth, (3, 2W, W) -> (6, W, W) (DiT is square-only)
    model: DiTParams
    prediction_type: str  # epsilon | v_prediction | sample
    beta_schedule: str  # linear | squaredcos_cap_v2 | scaled_linear
    steps: int
    batch: int
    lr: float
    weight_decay: float
    warmup: int
    ema_decay: float
    label_dropout: float
    ckpt_every: int
    sample_steps: int  # DDIM steps of the sample grid
    device: str


@dataclass(frozen=True)
class SamplerParams:
    """The one sampling procedure: what RL optimises is what cold-start evaluation and synthesis use."""

    steps: int  # DDIM steps
    eta: float  # DDIM eta: > 0 makes every step but the last stochastic (RL needs a stochastic policy)
    guidance: float  # classifier-free guidance scale (1 = none)
    spacing: Literal["leading", "trailing", "linspace"]  # the timestep grid (diffusers' timestep_spacing)


@dataclass(frozen=True)
class ColdstartParams:
    """Paper §4.1: a new zero-initialised label table for the target identities, backbone frozen (`tune:
    table`); beyond the paper, the table may start at the pretrained classes (`init`), and LoRA adapters or
    every tensor learn beside it from the same loss."""

    pretrained: str  # a diffusers DiT folder (models/prior, or a local facebook/DiT-XL-2-256)
    out_dir: str
    metrics: str  # identity consistency before/after (JSON)
    grid: str  # sample grid PNG (real | generated)
    steps: int
    batch: int
    lr: float  # paper: 1e-5 for DiT-XL/2; the tiny prior's table needs far more (see README)
    warmup: int
    ema_decay: float
    label_dropout: float
    flip: bool
    ckpt_every: int
    seed: int
    device: str
    eval_per_id: int  # samples per identity for the identity-consistency check
    eval_seed: int  # their noise
    grid_ids: int  # identities (rows) in the sample grid
    init: str  # zero (paper §4.1) | nearest (each identity at its nearest pretrained class) | mean
    init_per_class: int  # init nearest: samples drawn of every pretrained class to match identities against
    tune: str  # table (paper §4.1) | lora (+ adapters on lora_targets) | full (+ every tensor)
    body_lr: float  # lr of what learns beside the table (lora, full)
    lora_rank: int
    lora_targets: list[str]  # module-name suffixes that get adapters (peft target_modules)

    def __post_init__(self):
        if self.init not in ("zero", "nearest", "mean"):
            raise ValueError(f"params.yaml: coldstart.init = {self.init!r}; use zero (paper), nearest or mean")
        if self.init == "nearest" and self.init_per_class < 1:
            raise ValueError(f"params.yaml: coldstart.init_per_class = {self.init_per_class}; init nearest needs >= 1")
        if self.tune not in ("table", "lora", "full"):
            raise ValueError(f"params.yaml: coldstart.tune = {self.tune!r}; use table (paper), lora or full")


@dataclass(frozen=True)
class RLParams:
    """RL fine-tuning on the multi-objective reward (paper §4.2; rgsyn/rl); sampling per `sampler`."""

    coldstart: str  # the cold-start checkpoint folder (the initial and the KL / anchor reference policy)
    bank: str  # memory bank Parquet (reference-encoder features of the member train images)
    out_dir: str
    metrics: str  # held-out rewards and identity consistency before/after (JSON)
    algorithm: Literal["dpok", "draft"]  # dpok: score-function (the paper's); draft: pathwise reward gradient
    steps: int  # updates (one rollout each)
    ids_per_step: int
    group_size: int  # samples per identity per rollout (>= 4: group-relative advantages, R_exp's credit)
    inner_epochs: int  # dpok: passes over each rollout's transitions
    minibatches: int  # dpok: optimiser steps per pass (trajectories split into this many groups)
    min_sigma: float  # dpok: transitions with a smaller std are left out of the loss and the KL
    kl_weight: float  # dpok
    clip_range: float  # dpok
    draft_k: int  # draft: the last k sampler steps carry the gradient (0 = all)
    draft_uncond_grad: bool  # draft: the gradient also flows through the unconditional guidance branch
    anchor_weight: float  # draft: weight of the squared x0-prediction distance to the cold-start policy
    lr: float  # LoRA adapters (or every tensor with full_finetune)
    table_lr: float  # the label table
    max_grad_norm: float
    lora_rank: int
    lora_targets: list[str]  # module-name suffixes that get adapters (peft target_modules)
    full_finetune: bool
    sigma: float  # RBF bandwidth of R_cov
    alpha: float  # redundancy weight of R_cov
    eps: float  # target expansion of R_exp
    tau: float  # temperature of R_exp
    weights: list[float]  # lambda_sem, lambda_cov, lambda_exp
    curriculum: bool  # CGPO class sampling
    curriculum_floor: float
    curriculum_smoothing: float
    curriculum_bonus: float
    eval_per_id: int  # held-out evaluation: samples per identity (>= 2: R_cov, R_exp are group values)
    eval_seed: int
    eval_batch: int  # samples per sampler call in the evaluation and validation (no gradient)
    val_every: int  # validation (R_sem by the validation encoder) every this many steps; 0 = none
    val_per_id: int  # its held-out samples per identity
    val_seed: int
    patience: int  # stop after this many validations without a gain (0 = run every step); the best is kept
    grid_every: int
    seed: int
    device: str

    def __post_init__(self):
        if Path(self.metrics) == Path(self.out_dir) / "rl.json":
            raise ValueError(f"params.yaml: rl.metrics = {self.metrics!r} is the policy's own rl.json in rl.out_dir "
                             "(its pids and adapter settings): write the metrics elsewhere")


@dataclass(frozen=True)
class SynthParams:
    """Shard synthesis (rgsyn/synth: the synthesize stage, the shard schema); sampling per `sampler`, gates per
    `audit`."""

    checkpoint: str  # generator: an RL (rl.json) or cold-start (coldstart.json) checkpoint folder
    out_dir: str  # Parquet shards + _manifest.json
    metrics: str  # counts and rates of the run (JSON)
    mode: str  # augment: more images of the real identities | novel: new identities (rgsyn.privacy)
    num_ids: int  # augment: identities to synthesise, the generator's first ones (0 = all); novel: new ones
    per_id: int  # images per identity (>= 3: R_exp's leave-one-out credit needs whole groups)
    candidates: int  # best-of-n: candidates drawn per released sample, the best by eq. 11 kept (1 = off)
    ids_per_shard: int  # a shard = this many whole identities
    batch: int  # sampling batch (images, before the guidance doubling)
    seed: int  # global seed; shard i's seed is a function of (seed, i)
    sem_floor: float  # acceptance gate: samples with R_sem below it are not accepted
    task_runner: str  # threads | dask
    dask_address: str  # "" = start a LocalCluster; else a running scheduler (tcp://host:8786)
    workers: int  # shards at once: threads (threads) or LocalCluster worker processes (dask)
    retries: int  # Prefect retries of a shard task
    device: str  # cpu | cuda | auto


@dataclass(frozen=True)
class GeneralEncoderParams:
    """An identity encoder trained on the prior's general-domain identities only (rgsyn.pretrain): the
    audit's independent matcher (`auditor`) and the trainers' general-domain pretraining (`backbone`)."""

    out_dir: str  # committed like the prior (frozen stage)
    num_classes: int  # general-domain identities (disjoint from the target)
    per_class: int
    seed: int  # picks the identities and their renders: another seed, other identities
    train: TrainParams


@dataclass(frozen=True)
class AuditParams:
    """Privacy audit (rgsyn/privacy, docs/privacy.md): near-copies, membership inference, novel-identity leakage."""

    encoder: str  # the auditor: models/auditor, or a local checkpoint of your own matcher (rgsyn encoder format)
    copy_quantile: float  # near-copy: closer to a training image than this quantile of real same-identity nearest shots
    cluster_quantile: float  # consistency clusters link samples closer than this quantile of real genuine pairs
    fpir: float  # novel mode: 1:N identity-leak threshold at this false-positive identification rate
    control_images: int  # positive control: real train images sent through each round trip
    control_timesteps: list[int]  # SDEdit noise levels of the positive control (of 1000)
    mia_timesteps: list[int]  # denoising-loss membership attack timesteps
    novel_ids: int  # novel identities generated by the privacy stage
    novel_out_dir: str  # their shards
    report: str  # reports/privacy -> .json, .md, .png
    seed: int


@dataclass(frozen=True)
class ReleaseParams:
    """What the dataset cards of the releases declare that no file can tell (rgsyn/synth/card.py)."""

    license: str  # the card's `license`: a Hugging Face license id (cc-by-nc-4.0, other, ...) or unknown


@dataclass(frozen=True)
class ReportParams:
    markdown: str  # the pipeline summary
    embedding: str  # real vs synthetic features plot


@dataclass(frozen=True)
class ComputeParams:
    """How every stage computes (rgsyn/devices.py); the defaults are the CPU-exact ones."""

    precision: str  # fp32 | bf16 (autocast forwards; log-probs, DPOK ratios and losses stay fp32)
    tf32: bool  # TF32 matmuls on Ampere+ GPUs
    channels_last: bool  # convolutional recognition models on CUDA
    compile: str  # "" = eager; else a torch.compile backend ("inductor")
    grad_checkpointing: bool  # RL: recompute DiT activations in the backward (DiT-XL/2 at 256x256)
    processes: int  # > 1: the trainers and RL run under torchrun, one process per GPU (rgsyn/distributed.py)


@dataclass(frozen=True)
class TrackingParams:
    uri: str  # MLflow tracking URI
    experiment: str


@dataclass(frozen=True)
class Params:
    data: DataParams
    reference: ReferenceParams
    prior: PriorParams
    auditor: GeneralEncoderParams
    backbone: GeneralEncoderParams
    sampler: SamplerParams
    coldstart: ColdstartParams
    rl: RLParams
    synth: SynthParams
    audit: AuditParams
    release: ReleaseParams
    utility: UtilityParams
    downstream: DownstreamParams
    report: ReportParams
    ablation: AblationParams
    compute: ComputeParams
    tracking: TrackingParams


def _check(cls, raw, where: str, file: str):
    """Build dataclass `cls` from the mapping `raw`, refusing unknown, missing or mistyped keys."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{file}: `{where}` must be a mapping, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(raw) - set(names))
    if unknown:
        raise ConfigError(f"{file}: unknown key `{where}.{unknown[0]}`; valid keys of `{where}` are {names}. "
                          "Fix the spelling or remove it.")
    missing = [n for n in names if n not in raw]
    if missing:
        raise ConfigError(f"{file}: missing key `{where}.{missing[0]}` ({hints[missing[0]]}); add it to the file.")
    kw = {}
    for n in names:
        kw[n] = _value(hints[n], raw[n], f"{where}.{n}", file)
    return cls(**kw)


def _value(tp, v, where: str, file: str):
    if dataclasses.is_dataclass(tp):
        return _check(tp, v, where, file)
    origin = typing.get_origin(tp)
    if origin in (list, tuple):
        if not isinstance(v, (list, tuple)):
            raise ConfigError(f"{file}: `{where}` must be a list, got {v!r}")
        (item,) = typing.get_args(tp)[:1]
        return tuple(_value(item, x, f"{where}[{i}]", file) for i, x in enumerate(v))
    if origin in (typing.Union, types.UnionType):
        return v
    if origin is typing.Literal:
        choices = typing.get_args(tp)
        if v not in choices:
            raise ConfigError(f"{file}: `{where}` = {v!r} is not one of {list(choices)}; set it to one of them.")
        return v
    ok = {
        bool: lambda x: isinstance(x, bool),
        int: lambda x: isinstance(x, int) and not isinstance(x, bool),
        float: lambda x: isinstance(x, (int, float)) and not isinstance(x, bool),
        str: lambda x: isinstance(x, str),
    }[tp](v)
    if not ok:
        raise ConfigError(f"{file}: `{where}` must be {tp.__name__}, got {v!r} ({type(v).__name__})")
    return float(v) if tp is float else v


def _raw(path: Path, overrides: dict | None) -> dict:
    if not path.exists():
        raise ConfigError(f"{path}: file not found; run from the repository root or pass the params path.")
    raw = yaml.safe_load(path.read_text()) or {}
    for key, value in (overrides or {}).items():
        node = raw
        *parents, leaf = key.split(".")
        for p in parents:
            if not isinstance(node.get(p), dict):
                raise ConfigError(f"{path}: override `{key}`: `{p}` is not a section of the file.")
            node = node[p]
        if leaf not in node:
            raise ConfigError(f"{path}: override `{key}` names no existing key.")
        node[leaf] = value
    return raw


def load_params(path: str | Path = DEFAULT_PARAMS, overrides: dict | None = None) -> Params:
    """Read and check params.yaml. `overrides` maps dotted keys (`reference.train.epochs`) to values."""
    path = Path(path)
    return _check(Params, _raw(path, overrides), "params", str(path))


def write_params(path: str | Path, overrides: dict, out: str | Path) -> Path:
    """params.yaml with `overrides` applied, checked, written to `out` (what a triggered run used)."""
    path, out = Path(path), Path(out)
    raw = _raw(path, overrides)
    _check(Params, raw, "params", f"{path} + overrides {sorted(overrides)}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(yaml.safe_dump(raw, sort_keys=False))
    return out


def to_dict(cfg) -> dict:
    """A dataclass config as plain JSON-able dicts (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def flatten(d: dict, prefix: str = "", sep: str = ".") -> dict:
    """{'a': {'b': 1}} -> {'a.b': 1} (MLflow params; sep "/" makes MLflow chart sections)."""
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + sep, sep))
        else:
            out[key] = v
    return out


class _CommandLineLoader(yaml.SafeLoader):
    """YAML with only true/false as booleans: YAML 1.1 reads `off`, `on`, `yes`, `no` as booleans, and
    a command-line `selection.mode=off` means the string."""


_CommandLineLoader.yaml_implicit_resolvers = {
    c: [r for r in rs if r[0] != "tag:yaml.org,2002:bool"] for c, rs in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_CommandLineLoader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                                         list("tTfF"))


def parse_value(text: str):
    """One command-line value: a YAML scalar or list, with only true/false as booleans."""
    return yaml.load(text, Loader=_CommandLineLoader)


def parse_overrides(pairs: list[str]) -> dict:
    """Command-line `key=value` pairs -> {dotted key: parse_value(value)} for load_params/write_params."""
    return {k: parse_value(v) for k, v in (pair.split("=", 1) for pair in pairs)}


def json_hash(obj) -> str:
    """Short sha256 of a JSON-able object (key order does not matter)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def params_hash(cfg) -> str:
    return json_hash(to_dict(cfg))


if __name__ == "__main__":  # python -m rgsyn.config OUT.yaml key=value ...: params.yaml with overrides, checked
    import sys

    print(write_params(DEFAULT_PARAMS, parse_overrides(sys.argv[2:]), sys.argv[1]))
