"""Two gloo processes compute what one process computes at the same global batch (rgsyn.distributed):
the recognition trainer (P×K batches, hard-mining triplet on the all-gathered rows, gradient
all-reduce) and DPOK's update (global minibatches, share-weighted losses, gradient sum).

BatchNorm's batch statistics are synchronised by torch only on GPUs (SyncBatchNorm); the trainer's
check therefore uses a model without batch-dependent normalisation, so that what is compared is the
sharding, the gathering and the reductions themselves.
"""
import os

import numpy as np
import pytest
import torch
import torch.distributed as tdist
import torch.multiprocessing as mp
from torch import nn

from rgsyn.config import load_params
from tests.conftest import ROOT


class NoBNEncoder(nn.Module):
    """(feat, logits) in train mode, like IdentityEncoder, without batch-dependent normalisation."""

    def __init__(self, classes=6):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                                  nn.Linear(32, 16))
        self.head = nn.Linear(16, classes)

    def forward(self, x):
        f = self.body(x)
        return f, self.head(f)


def train_once():
    import dataclasses

    from rgsyn.downstream.losses import reid_loss
    from rgsyn.downstream.trainer import fit

    torch.manual_seed(0)
    model = NoBNEncoder()
    cfg = dataclasses.replace(load_params(ROOT / "params.yaml").reference.train, epochs=3, p=4, k=2, height=16,
                              width=8, pad=1, iters_per_epoch=2, warmup_epochs=1, lr=0.01)
    g = torch.Generator().manual_seed(1)
    images = torch.randint(0, 255, (24, 3, 16, 8), dtype=torch.uint8, generator=g)
    labels = np.repeat(np.arange(6), 4)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    first = {k: v.detach().clone() for k, v in model.state_dict().items()}
    fit(model, opt, images, labels, cfg, 0, lambda f, lg, y: reid_loss(f, lg, y, 0.3, 0.1), progress=False)
    return first, {k: v.detach().clone() for k, v in model.state_dict().items()}


def dpok_once():
    from rgsyn import distributed as dist
    from rgsyn.generator.dit import DiTBundle, build_dit, make_scheduler, reset_class_embedding
    from rgsyn.generator.sampler import Sampler
    from rgsyn.rl.dpok import dpok_update
    from rgsyn.rl.policy import Policy

    torch.manual_seed(0)
    model = reset_class_embedding(build_dit("tiny", 8, 4, num_classes=5), 5)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    b = DiTBundle(model.eval(), make_scheduler("epsilon", "squaredcos_cap_v2"), None, 1)
    rp = load_params(ROOT / "params.yaml").rl
    import dataclasses
    rp = dataclasses.replace(rp, inner_epochs=2, minibatches=2, lr=0.01, table_lr=0.01)
    policy = Policy(b.transformer, 2, False, 0, rp.lora_targets)
    with torch.no_grad():  # a non-zero adapter, so the update moves everything
        for k, v in policy.params.items():
            if "lora_B" in k:
                v.normal_(0, 0.01)
    opt = torch.optim.AdamW(policy.param_groups(rp.lr, rp.table_lr), weight_decay=0.0)
    first = {k: v.detach().clone() for k, v in policy.params.items()}
    s = Sampler(b, 3, eta=1.0, guidance=2.0)
    labels, seeds = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3]), list(range(8))
    adv = torch.tensor([1.0, -1.0, 0.5, -0.5, 2.0, -2.0, 0.1, -0.1])
    traj = s.sample(labels, seeds, record=True)  # the global rollout; each process keeps its rows
    rows = dist.local_rows(8)
    local = type(traj)(traj.x0[rows], traj.latents[:, rows], traj.log_probs[:, rows], traj.timesteps)
    dpok_update(policy, s, local, labels[rows], adv[rows], rp, opt, torch.Generator().manual_seed(3), False)
    return first, {k: v.detach().clone() for k, v in policy.params.items()}


FNS = {"train": train_once, "dpok": dpok_once}


def _worker(rank, world, init, fn, out):
    torch.set_num_threads(1)
    tdist.init_process_group("gloo", init_method=f"file://{init}", rank=rank, world_size=world)
    try:
        result = FNS[fn]()
        if rank == 0:
            torch.save(result, out)
    finally:
        tdist.destroy_process_group()


def two_processes(fn, tmp_path):
    out = tmp_path / f"{fn}.pt"
    os.environ.setdefault("PYTHONPATH", str(ROOT))
    mp.spawn(_worker, args=(2, tmp_path / f"{fn}.init", fn, str(out)), nprocs=2, join=True)
    return torch.load(out)


@pytest.fixture
def one_thread():
    """Both sides single-threaded, and the suite's thread count back afterwards (other tests compare
    bytes with subprocesses that use the default)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.mark.parametrize("fn", ["train", "dpok"])
def test_two_processes_equal_one_at_the_same_global_batch(fn, tmp_path, one_thread):
    first, one = FNS[fn]()
    _, two = two_processes(fn, tmp_path)
    assert one.keys() == two.keys()
    for k in one:
        torch.testing.assert_close(two[k], one[k], atol=1e-5, rtol=1e-4)
    assert any(not torch.equal(first[k], one[k]) for k in one)  # the run did train


def test_local_rows_split_evenly_or_refuse():
    from rgsyn import distributed as dist

    assert dist.local_rows(8) == slice(0, 8) and dist.world() == (0, 1)
    assert dist.gather_rows(torch.ones(2)).shape == (2,)
