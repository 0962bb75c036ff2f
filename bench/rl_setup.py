"""What the RL benches load from the default run: the cold-start generator, the reward's encoder and
memory bank, and the identity-consistency judge (the audit's encoder where there is one), as
rgsyn.rl.loop.run_rl loads them."""
from __future__ import annotations

from types import SimpleNamespace

import torch

from rgsyn import rewards as R
from rgsyn.config import Params
from rgsyn.data.images import load_images
from rgsyn.data.layouts import member_split
from rgsyn.encoder import load_encoder
from rgsyn.generator.coldstart import load_coldstart
from rgsyn.identity import make_judge
from rgsyn.memory_bank import by_class, ensure_memory_bank, load_memory_bank


def load(p: Params) -> SimpleNamespace:
    """-> bundle, pids, enc (reference encoder), bank (per-identity float64 features), s_pool, judge."""
    bundle, pids = load_coldstart(p.rl.coldstart)
    enc = load_encoder(p.reference.out_dir)
    ensure_memory_bank(p.rl.bank, p.data, enc)
    feats, bank_pids = load_memory_bank(p.rl.bank)
    bank = [b.double() for b in by_class(feats, bank_pids, pids)]
    members, _ = member_split(p.data)
    table = {q: i for i, q in enumerate(pids)}
    judge = make_judge(p, enc, load_images([r.path for r in members], enc.cfg.height, enc.cfg.width),
                       torch.tensor([table[r.pid] for r in members]), len(pids))
    return SimpleNamespace(bundle=bundle, pids=pids, enc=enc, bank=bank, s_pool=R.pooled_spread(bank), judge=judge)
