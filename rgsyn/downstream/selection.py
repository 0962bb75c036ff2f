"""Dynamic sample selection (DSS; paper §4.3, eq. 12) for the downstream re-id trainer.

Each step sees a mixed batch: real images first, then S synthetic candidates. A virtual step on the
whole batch approximates where training is heading; a candidate x̂ is useful when that step lowers its
identity loss, so each candidate is scored by

    Δl(x̂) = l_id(w', x̂) − l_id(w, x̂),   w' = w − η ∇_w L(mixed batch)              (eq 12)

and only the candidates with the smallest Δl join the real step (real + kept).

Choices the paper leaves open (fixed here, documented where they live):
- l_id, the paper's "identity-consistency loss", is the per-sample cross-entropy of the classifier on
  the candidate's conditioned identity (`identity_loss`): it measures exactly whether the sample is
  read as the identity it was generated for. No label smoothing: smoothing adds a uniform term that
  has nothing to do with identity consistency. A trainer with another head passes its own l_id
  (faces: the per-sample CosFace loss).
- L is the trainer's full loss (`loss_fn`, e.g. CE with label smoothing + batch-hard triplet); the
  virtual step is plain SGD with η = the current learning rate (see `virtual_step`).
- Which rows L covers (`lookahead`): "mixed" is eq 12 as printed, the whole mixed batch; "real"
  (default) is its real rows only, in the same forward. To first order Δl(x̂) = −η ∇l(x̂)·∇L, and
  with x̂ inside L that sum holds x̂'s own term −η |∇l(x̂)|²/B: the larger a candidate's own gradient,
  i.e. the worse the model reads it as its identity, the smaller its Δl. Mixed selection therefore
  prefers the candidates that look like another identity (bench/selection.py prints the identity
  loss of kept vs dropped candidates; docs/selection.md). On the real rows Δl measures how a
  candidate agrees with the direction the real data set (learning-to-reweight, Ren et al. 2018).
- Both l_id(w) and l_id(w') are computed like the training loss: train mode, BN normalises with the
  statistics of the mixed batch. The BN running statistics are never touched by the lookahead: every
  lookahead forward runs on *clones* of the buffers (`_buffer_copies`), or, for the fast mode's
  graph-free forward, on the module itself with its buffers put back (`_buffers_restored`).
  Eval-mode BN would avoid the clones but scores with running statistics that lag the weights (badly
  so early in training) and would score at a model state the step does not train.
- Models with dropout would see different masks at w and w'; the re-id encoders here have none.

Two modes give Δl:
- `delta_exact`: the lookahead itself, on a functional copy of the weights
  (`torch.func.functional_call`; the module is never deep-copied or modified). Cost ≈ one extra
  forward + backward + forward on top of the step.
- `delta_fast`: the first-order term Δl ≈ −η ∇_θ l_id(x̂)·∇_θ L restricted to a parameter subset θ
  (the head, or the head + the last backbone stages: `encoder_split`). For all S candidates at once
  this is one Jacobian-vector product of the per-sample loss vector along ∇_θ L (forward-mode AD)
  on a graph-free forward of the mixed batch: about one forward on top of the step.

Both modes then train on the real rows + the kept candidates in a fresh forward, so a dropped
candidate shapes neither the step's BatchNorm statistics (batch and running) nor its gradient: the
step is the one a batch of real + kept would take. The mode "random" keeps a uniformly random subset
of the same size; it is the control that tells the score's value from the composition's
(docs/selection.md).

The fast mode ranks only approximately, because the stem's term and the gradient through BN's
batch statistics carry much of ∇l·∇L; what matters is which candidates it keeps. bench/selection.py
measures both modes' cost and how many of the exact mode's kept candidates the fast mode keeps
(docs/selection.md). Use "exact" where ranking fidelity is worth about twice the step time.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Callable, NamedTuple

import torch
import torch.autograd.forward_ad as fwAD
from torch import nn
from torch.func import functional_call

from rgsyn.downstream.losses import identity_loss
from rgsyn.encoder import head_logits

# loss_fn(feat (B, D), logits (B, C), labels (B,)) -> scalar tensor, or a dict whose "loss" is one
# (rgsyn.downstream.losses.reid_loss with margin / smoothing bound fits).
LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], "torch.Tensor | dict"]
IdLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # l_id(logits (B, C), labels (B,)) -> (B,)
MODES = ("off", "random", "fast", "exact")
LOOKAHEADS = ("real", "mixed")


# ---------------------------------------------------------------------------------------- pieces
def _total(out) -> torch.Tensor:
    return out["loss"] if isinstance(out, dict) else out


def _buffer_copies(module: nn.Module) -> dict[str, torch.Tensor]:
    """Clones of all buffers: a train-mode forward updates BN running stats in place on these."""
    return {n: b.clone() for n, b in module.named_buffers()}


def _split_params(module: nn.Module) -> tuple[dict, dict]:
    """(trainable parameters as they are, frozen ones detached), e.g. the BNNeck's fixed bias."""
    train = {n: p for n, p in module.named_parameters() if p.requires_grad}
    frozen = {n: p.detach() for n, p in module.named_parameters() if not p.requires_grad}
    return train, frozen


def virtual_step(params: dict[str, torch.Tensor], grads, lr: float) -> dict[str, torch.Tensor]:
    """w' = w − η g (plain SGD, detached).

    SGD is the standard lookahead (learning-to-reweight, Ren et al. 2018; Meta-Weight-Net; DARTS):
    it is stateless and linear in g, so Δl has the clean first-order form −η ∇l·∇L that the fast
    mode computes. The trainer's real step is Adam, whose update depends on its moment estimates
    (the first steps are ≈ η·sign(g)); mimicking it would need a copy of the optimiser state and
    would give up the closed form. The ranking of candidates, which is all DSS uses, depends on η
    only through higher-order terms.
    """
    return {n: p.detach() - lr * g for (n, p), g in zip(params.items(), grads)}


def n_kept(s: int, ratio: float) -> int:
    """How many of s candidates a keep ratio keeps: ceil(ratio·s) (a 1e-9 slack keeps 0.3·10 at 3)."""
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"DSS keep ratio must lie in [0, 1], got {ratio}")
    return min(s, math.ceil(ratio * s - 1e-9))


def select(delta: torch.Tensor, ratio: float) -> torch.Tensor:
    """Indices (ascending position) of the k candidates with the smallest Δl, k = ceil(ratio·S).

    ceil: any ratio > 0 keeps at least one candidate, ratio 1 keeps all, ratio 0 none (a 1e-9 slack
    keeps 0.3·10 at 3). Ties are broken by position (stable sort); NaN counts as +inf. Positions are
    returned in batch order so the kept rows keep the P×K layout of the candidates.
    """
    k = n_kept(len(delta), ratio)
    d = torch.nan_to_num(delta.detach().float(), nan=float("inf"))
    order = torch.sort(d, stable=True).indices[:k]
    return order.sort().values


def synthetic_share(progress: float, start: float = 0.5, end: float = 0.1) -> float:
    """The synthetic share of the batch at training progress ∈ [0, 1] under the curriculum of "Hybrid
    Generative Fusion for Efficient and Privacy-Preserving Face Recognition Dataset Generation"
    (arXiv:2508.10672).

    Cosine from `start` (synthetic-heavy: consistent, easy samples while the model is rough) to `end`
    (real-heavy: the target distribution decides the final weights). Progress is clamped to [0, 1].
    """
    t = min(max(progress, 0.0), 1.0)
    return end + (start - end) * 0.5 * (1 + math.cos(math.pi * t))


# --------------------------------------------------------------------------------------- exact Δl
def loss_grads(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn: LossFn):
    """(∇_w L(x, y) for the trainable parameters in order, the forward's logits (B, C)).

    `model` is in train mode and returns (feat, logits). Gradients come from autograd.grad (the
    parameters' .grad stay untouched), the forward runs via functional_call on cloned buffers, so
    neither weights nor BN statistics change.
    """
    params, frozen = _split_params(model)
    feat, logits = functional_call(model, {**params, **frozen, **_buffer_copies(model)}, (x,))  # (B, D), (B, C)
    return torch.autograd.grad(_total(loss_fn(feat, logits, y)), list(params.values())), logits


def lookahead(model: nn.Module, x: torch.Tensor, y: torch.Tensor, n_real: int, grads, lr: float,
              before: torch.Tensor | None = None, id_loss: IdLoss = identity_loss) -> torch.Tensor:
    """l_id(w − η g, x̂) − l_id(w, x̂) for the candidates x[n_real:] and a direction g (one tensor per
    trainable parameter, as `loss_grads` gives). -> (S,)

    before: l_id(w, x̂) when the caller has it; otherwise one more forward. Forwards on cloned buffers.
    """
    params, frozen = _split_params(model)
    with torch.no_grad():
        if before is None:
            _, logits = functional_call(model, {**params, **frozen, **_buffer_copies(model)}, (x,))
            before = id_loss(logits[n_real:], y[n_real:])
        moved = {**virtual_step(params, grads, lr), **frozen, **_buffer_copies(model)}
        _, logits2 = functional_call(model, moved, (x,))
        return id_loss(logits2[n_real:], y[n_real:]) - before


def lookahead_loss(loss_fn: LossFn, n_real: int, rows: str) -> LossFn:
    """The virtual step's loss: loss_fn on the real rows (`rows` "real") or on all (`"mixed"`)."""
    if rows not in LOOKAHEADS:
        raise ValueError(f"params.yaml: downstream.selection.lookahead = {rows!r}; use one of {LOOKAHEADS}")
    if rows == "mixed":
        return loss_fn
    return lambda feat, logits, y: loss_fn(feat[:n_real], logits[:n_real], y[:n_real])


def delta_exact(model: nn.Module, x: torch.Tensor, y: torch.Tensor, n_real: int, lr: float,
                loss_fn: LossFn, id_loss: IdLoss = identity_loss, rows: str = "mixed") -> torch.Tensor:
    """Δl of eq 12 for the candidates x[n_real:], by the lookahead itself: g = ∇L over `rows` of the
    mixed batch's forward ("mixed": all, "real": the real ones). -> (S,)

    Neither weights, their .grad nor BN statistics change (see `loss_grads`, `lookahead`).
    """
    grads, logits = loss_grads(model, x, y, lookahead_loss(loss_fn, n_real, rows))
    before = id_loss(logits[n_real:], y[n_real:]).detach()  # (S,)
    return lookahead(model, x, y, n_real, grads, lr, before, id_loss)


# ---------------------------------------------------------------------------------------- fast Δl
class Split(NamedTuple):
    """A model cut in two: `prefix(x) -> z`, `suffix(z) -> (feat, logits)`; the fast mode scores with
    the suffix's parameters only. prefix then suffix computes exactly model(x) in train mode."""
    prefix: Callable[[torch.Tensor], torch.Tensor]
    suffix: nn.Module


class _Tail(nn.Module):
    """The end of an IdentityEncoder from some backbone stage on: stages -> pool -> proj -> BNNeck ->
    classifier (the train-mode branch of IdentityEncoder.forward). Shares the model's modules."""

    def __init__(self, model: nn.Module, stages: list[nn.Module], pool: nn.Module | None):
        super().__init__()
        self.stages = nn.Sequential(*stages)
        self.pool = pool if pool is not None else nn.Identity()
        self.proj, self.bnneck, self.classifier = model.proj, model.bnneck, model.classifier
        self.head = getattr(getattr(model, "cfg", None), "head", "linear")  # any (feat, logits) model

    def forward(self, z: torch.Tensor):
        feat = self.proj(self.pool(self.stages(z)))  # (B, D)
        return feat, head_logits(self.classifier, self.bnneck(feat), self.head)  # (B, D), (B, C)


def encoder_split(model: nn.Module, scope: str = "head") -> Split:
    """Cut `model` where the fast mode's parameter subset starts.

    scope "head": proj + BNNeck + classifier (z = backbone output, (B, F)); "all": every parameter
    (any model returning (feat, logits); prefix is the identity); otherwise the name of a backbone
    child such as "layer4": that stage onwards + the head. Stage cuts assume a timm ResNet-style
    backbone whose forward_features runs its children in order up to `global_pool` and whose head
    has no parameters and no dropout (test_resnet, resnet50 with num_classes=0).
    """
    if scope == "all":
        return Split(lambda x: x, model)
    if scope == "head":
        return Split(model.backbone, _Tail(model, [], None))
    bb = model.backbone
    names = [n for n, _ in bb.named_children()]
    stages = names[:names.index("global_pool")] if "global_pool" in names else []
    if scope not in stages:
        raise ValueError(f"DSS fast scope '{scope}' unknown: use 'head', 'all' or a backbone stage "
                         f"before global_pool ({', '.join(stages) or 'this backbone has none'})")
    fc = getattr(bb, "fc", None)
    if (fc is not None and any(True for _ in fc.parameters())) or getattr(bb, "drop_rate", 0.0):
        raise ValueError("DSS stage cut needs a backbone without classifier weights or head dropout")
    i, j = names.index(scope), len(stages)
    children = [m for _, m in bb.named_children()]
    return Split(nn.Sequential(*children[:i]), _Tail(model, children[i:j], bb.global_pool))


def delta_fast(split: Split, z: torch.Tensor, y: torch.Tensor, n_real: int, lr: float, loss_fn: LossFn,
               id_loss: IdLoss = identity_loss, rows: str = "mixed") -> torch.Tensor:
    """First-order Δl ≈ −η ∇_θ l_id(x̂)·∇_θ L for the candidates (rows n_real:), θ = suffix params,
    L over `rows` of the batch ("mixed": all, "real": the real ones). -> (S,)

    z: the prefix output of the mixed batch. ∇_θ L comes from a forward of the suffix, and the S dot
    products are one JVP: d/dε l_id(θ + ε ∇_θ L) via forward-mode AD on the suffix; both run in train
    mode on cloned buffers, which keeps the BN coupling of the batch exact and the model untouched.
    """
    params, frozen = _split_params(split.suffix)
    state = {**params, **frozen, **_buffer_copies(split.suffix)}
    feat, logits = functional_call(split.suffix, state, (z,))  # (B, D), (B, C)
    loss = lookahead_loss(loss_fn, n_real, rows)
    grads = torch.autograd.grad(_total(loss(feat, logits, y)), list(params.values()))
    with torch.no_grad(), fwAD.dual_level():
        dual = {n: fwAD.make_dual(p.detach(), g) for (n, p), g in zip(params.items(), grads)}
        _, lg = functional_call(split.suffix, {**dual, **frozen, **_buffer_copies(split.suffix)}, (z.detach(),))
        slope = fwAD.unpack_dual(id_loss(lg[n_real:], y[n_real:])).tangent  # (S,) = ∇l_i·∇L
    return -lr * slope


# ------------------------------------------------------------------------------------- the step
def apply_step(opt: torch.optim.Optimizer, out, sync: Callable | None = None) -> dict[str, float]:
    """zero_grad, backward of the loss (a tensor or a dict with "loss"), `sync` (the gradient all-reduce
    of several processes), step -> the losses as floats."""
    opt.zero_grad(set_to_none=True)
    _total(out).backward()
    if sync is not None:
        sync()
    opt.step()
    return {k: v.item() for k, v in out.items()} if isinstance(out, dict) else {"loss": out.item()}


@contextmanager
def _buffers_restored(module: nn.Module):
    """Run a train-mode forward of the module itself and put its buffers back afterwards: the BN
    running statistics (and counters) end bit for bit as they were. The same result as a
    functional_call on cloned buffers, without its per-call reparametrisation (a tenth of the
    scoring forward on the CPU). Graph-free forwards only: the restore writes in place, which a
    pending backward through BatchNorm refuses."""
    saved = [(b, b.clone()) for b in module.buffers()]
    try:
        yield
    finally:
        with torch.no_grad():
            for b, c in saved:
                b.copy_(c)


def _scoring_input(split: Split, x: torch.Tensor) -> torch.Tensor:
    """The prefix's output z for `delta_fast`: no graph (θ is the suffix), BN statistics untouched."""
    with torch.no_grad():
        if not isinstance(split.prefix, nn.Module):
            return split.prefix(x)
        with _buffers_restored(split.prefix):
            return split.prefix(x)


def dss_step(model: nn.Module, opt: torch.optim.Optimizer, real_x: torch.Tensor, real_y: torch.Tensor,
             syn_x: torch.Tensor, syn_y: torch.Tensor, *, ratio: float, mode: str, loss_fn: LossFn,
             lr: float | None = None, scope: str = "head", id_loss: IdLoss | None = None,
             sync: Callable | None = None, lookahead: str = "mixed",
             generator: torch.Generator | None = None) -> dict:
    """One training step on real + selected synthetic images; `model` in train mode.

    mode "off": plain step on real + all candidates. Otherwise Δl ranks the candidates, "fast" by
    `delta_fast` (subset `scope`), "exact" by `delta_exact`, "random" by uniform draws from
    `generator` (the control), and the step trains on real + kept in a fresh forward: scoring
    touches neither BN statistics nor gradients. lr: η of the virtual step, default the optimiser's
    current lr. lookahead: the rows the virtual step's loss covers ("real" or "mixed", see the module
    docstring). Returns {"losses": floats of loss_fn, "kept": k, "candidates": S, "keep": positions
    (k,) into syn_x, "delta": Δl (S,) or None for "off"}.
    """
    if mode not in MODES:
        raise ValueError(f"DSS mode '{mode}' unknown: one of {MODES}")
    id_loss = id_loss or identity_loss
    lr = opt.param_groups[0]["lr"] if lr is None else lr
    n, s = len(real_x), len(syn_x)
    x, y = torch.cat([real_x, syn_x]), torch.cat([real_y, syn_y])  # (B, 3, H, W), (B,)
    if mode == "off":
        losses = apply_step(opt, loss_fn(*model(x), y), sync)
        return {"losses": losses, "kept": s, "candidates": s, "keep": torch.arange(s), "delta": None}
    if mode == "exact":
        delta = delta_exact(model, x, y, n, lr, loss_fn, id_loss, lookahead)
    elif mode == "fast":
        split = encoder_split(model, scope)
        delta = delta_fast(split, _scoring_input(split, x), y, n, lr, loss_fn, id_loss=id_loss, rows=lookahead)
    else:
        if generator is None:
            raise ValueError("DSS mode 'random' needs a generator (the trainer passes its own)")
        delta = torch.rand(s, generator=generator)
    keep = select(delta, ratio)
    rows = torch.cat([torch.arange(n), n + keep.cpu()]).to(x.device)
    losses = apply_step(opt, loss_fn(*model(x[rows]), y[rows]), sync)
    return {"losses": losses, "kept": len(keep), "candidates": s, "keep": keep.cpu(),
            "delta": delta.detach().cpu()}
