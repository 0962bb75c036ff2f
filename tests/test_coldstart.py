"""Prior -> cold start on a micro config: the stage code paths, resumable checkpoints, exact reset."""
import json

import pytest
import torch

from rgsyn.config import load_params
from rgsyn.data.stage import prepare
from rgsyn.downstream.reference import train_seed
from rgsyn.generator import load_dit
from rgsyn.generator.coldstart import load_coldstart, run_coldstart
from rgsyn.generator.dit import label_tables
from rgsyn.generator.prior import render_general, run_prior
from rgsyn.generator.train import trainable
from tests.conftest import micro_params

MICRO = {"prior.num_classes": 6, "prior.per_class": 2, "prior.num_cameras": 3, "prior.steps": 4,
         "prior.batch": 4, "prior.ckpt_every": 2, "prior.sample_steps": 2, "prior.warmup": 1,
         "prior.model.num_layers": 1, "prior.model.num_attention_heads": 2, "prior.model.attention_head_dim": 8,
         "coldstart.steps": 4, "coldstart.batch": 4, "coldstart.ckpt_every": 2, "coldstart.sample_steps": 2,
         "coldstart.eval_per_id": 1, "coldstart.grid_ids": 2, "coldstart.warmup": 1, "coldstart.device": "cpu",
         "prior.device": "cpu", "reference.train.seeds": [0],
         "rl.steps": 2, "rl.ids_per_step": 2, "rl.group_size": 3, "rl.sampler_steps": 3, "rl.eval_per_id": 3,
         "rl.lora_rank": 2, "rl.grid_every": 1, "rl.device": "cpu"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gen")
    raw = micro_params(tmp, **{"prior.out_dir": str(tmp / "prior"), "prior.ckpt_dir": str(tmp / "prior_state"),
                               "coldstart.pretrained": str(tmp / "prior"), "coldstart.out_dir": str(tmp / "cs"),
                               "rl.coldstart": str(tmp / "cs"), "rl.out_dir": str(tmp / "rl"),
                               "rl.bank": str(tmp / "bank.parquet"),
                               **MICRO})
    p = load_params(raw)
    prepare(p.data)
    train_seed(p, 0, save_reference=True, progress=False)
    return p, tmp


def test_general_domain_is_disjoint_and_deterministic():
    a, la = render_general(3, 2, 2, 16, 8, seed=0, progress=False)
    b, _ = render_general(3, 2, 2, 16, 8, seed=0, progress=False)
    assert torch.equal(a, b) and la.tolist() == [0, 0, 1, 1, 2, 2] and a.shape == (6, 3, 16, 8)


def test_prior_then_coldstart(stack, monkeypatch):
    p, tmp = stack
    monkeypatch.chdir(tmp)  # reports/ go into tmp
    out = run_prior(p, progress=False)
    bundle = load_dit(out["out_dir"])
    # params: 64x32 renders resized to the generator's 32x16, packed by 2 -> a 16x16 square of 6 channels
    assert (p.prior.height, p.prior.width) == (32, 16)
    assert bundle.pack == 2 and bundle.sample_shape == (6, 16, 16)
    assert json.loads((tmp / "prior/rgsyn.json").read_text())["image_size"] == [32, 16]
    assert json.loads((tmp / "prior_state/checkpoint.json").read_text())["step"] == 4
    again = run_prior(p, progress=False)  # resumes at step 4 == steps: nothing to train, same weights
    torch.testing.assert_close(load_dit(again["out_dir"]).transformer.state_dict(), bundle.transformer.state_dict())

    cs = run_coldstart(p, progress=False)
    for k in ("before", "after"):
        assert 0 <= cs[k]["top1"] <= 1 and cs[k]["chance"] == pytest.approx(1 / 20)
    model, pids = load_coldstart(p.coldstart.out_dir)
    assert len(pids) == 20 and pids == sorted(pids)
    table = label_tables(model.transformer)[0].embedding_table.weight
    assert table.shape == (21, 16) and torch.count_nonzero(table[:20]) > 0
    assert list(trainable(model.transformer)) == ["transformer_blocks.0.norm1.emb.class_embedder.embedding_table.weight"]
    # backbone untouched by cold start
    prior = load_dit(p.prior.out_dir).transformer.state_dict()
    for k, v in model.transformer.state_dict().items():
        if "class_embedder" not in k:
            torch.testing.assert_close(v, prior[k])
    assert (tmp / "reports/coldstart_samples.png").exists() and (tmp / "reports/prior_samples.png").exists()


def test_rl_after_coldstart(stack):
    """Runs after test_prior_then_coldstart (same module, file order): two DPOK iterations."""
    from rgsyn.memory_bank import load_memory_bank
    from rgsyn.rl.loop import load_rl, run_rl

    p, tmp = stack
    logged, grids = [], []
    out = run_rl(p, log=lambda m, s: logged.append((s, m)), artifact=grids.append, progress=False)
    assert set(out["before"]) == {"r_sem", "r_cov", "r_exp", "reward"} and set(out["after"]) == set(out["before"])
    assert [s for s, _ in logged] == [0, 1] and len(grids) == 2
    first = logged[0][1]
    assert first["ratio_mean"] == pytest.approx(1.0, abs=1e-6)  # on-policy: checked before the first update
    for k in ("r_sem_mean", "r_cov_mean", "r_exp_mean", "reward_mean", "kl", "grad_norm", "clip_frac"):
        assert k in first
    assert first["kl"] == pytest.approx(0.0, abs=1e-12)  # LoRA B = 0 and the table untouched at step 0
    assert logged[1][1]["kl"] > 0
    feats, pids = load_memory_bank(p.rl.bank)
    torch.testing.assert_close(feats.norm(dim=1), torch.ones(len(feats)))
    bundle, class_pids = load_rl(p.rl.out_dir)
    assert class_pids == sorted(set(pids.tolist()))
    assert any("lora_B" in n for n, _ in bundle.transformer.named_parameters())
