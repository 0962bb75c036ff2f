"""Prior -> cold start -> RL on a micro config: the stage code paths, resumable checkpoints, exact
reset, the membership hold-out, and DPOK's inner updates."""
import dataclasses
import json

import pytest
import torch

from rgsyn.config import load_params
from rgsyn.data.layouts import member_split, read_index
from rgsyn.data.stage import prepare
from rgsyn.downstream.run import train_seed
from rgsyn.generator.coldstart import load_coldstart, run_coldstart
from rgsyn.generator.dit import label_tables, load_dit
from rgsyn.generator.prior import render_general, run_prior
from rgsyn.generator.train import trainable
from tests.conftest import MICRO_GEN, micro_params


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gen")
    p = load_params(micro_params(tmp, **MICRO_GEN))
    prepare(p.data)
    train_seed(p, "reference", 0, save=True, progress=False)
    train_seed(p, "reference", 1, save=p.reference.val_out_dir, progress=False)  # RL's validation encoder
    return p, tmp


def test_general_domain_is_disjoint_and_deterministic():
    a, la = render_general(3, 2, 2, 16, 8, seed=0, progress=False)
    b, _ = render_general(3, 2, 2, 16, 8, seed=0, progress=False)
    assert torch.equal(a, b) and la.tolist() == [0, 0, 1, 1, 2, 2] and a.shape == (6, 3, 16, 8)
    # later captures of the same classes (the prior's truth): the same identities, none of the images
    c, lc = render_general(3, 2, 2, 16, 8, seed=0, progress=False, first=2)
    d, _ = render_general(3, 4, 2, 16, 8, seed=0, progress=False)
    assert lc.tolist() == la.tolist() and torch.equal(c, d.view(3, 4, 3, 16, 8)[:, 2:].reshape(6, 3, 16, 8))
    assert not any(torch.equal(x, y) for x in c for y in a)


def test_holdout_keeps_one_image_per_identity_with_two(stack):
    p, _ = stack
    train = read_index(p.data.index).train
    members, held = member_split(p.data)
    counts = {q: sum(r.pid == q for r in train) for q in {r.pid for r in train}}
    assert len(held) == sum(1 for c in counts.values() if c >= 2)
    assert {r.pid for r in members} == set(counts)  # every identity keeps a member image
    assert not {r.path for r in held} & {r.path for r in members}
    assert member_split(p.data) == (members, held)  # deterministic by data.seed


def test_prior_then_coldstart(stack):
    p, tmp = stack
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
    assert cs["judge"] == "reference"  # no auditor in this stack: the reference encoder reads the samples
    prior_fid = cs["fidelity"]["prior"]  # the prior on its own 6 classes, 1 sample each: CAS only
    assert prior_fid["cas_chance"] == pytest.approx(1 / 6) and 0 <= prior_fid["cas"] <= 1 and prior_fid["precision"] is None
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
    assert (tmp / "reports/cs.png").exists() and (tmp / "reports/prior.png").exists()


def test_rl_after_coldstart(stack):
    """Runs after test_prior_then_coldstart (same module, file order): two DPOK iterations."""
    import dataclasses

    from rgsyn.memory_bank import load_memory_bank
    from rgsyn.rl.core import METRICS, load_rl
    from rgsyn.rl.loop import run_rl

    from torch.optim.optimizer import register_optimizer_step_post_hook

    p, tmp = stack
    p = dataclasses.replace(p, rl=dataclasses.replace(p.rl, algorithm="dpok", val_every=0, inner_epochs=2,
                                                      minibatches=2))
    logged, grids, steps = [], [], []
    # every AdamW.step that really runs, read off at each iteration's log call
    handle = register_optimizer_step_post_hook(lambda opt, args, kwargs: steps.append(type(opt).__name__))

    def log(m, s):
        logged.append((s, m, len(steps)))

    try:
        out = run_rl(p, log=log, artifact=grids.append, progress=False)
    finally:
        handle.remove()
    assert set(steps) == {"AdamW"}
    per_iteration = [n - prev for (_, _, n), prev in zip(logged, [0] + [n for *_, n in logged])]
    assert per_iteration == [4, 4]  # inner_epochs 2 x minibatches 2, each iteration
    for part in ("before", "after", "se", "change"):
        assert set(out[part]) == set(METRICS)
    assert out["before"]["r_exp"] <= 0 and out["after"]["r_exp"] <= 0  # eq 9 is never positive
    assert set(out["frechet"]) >= {"before", "after", "change", "se"} and out["algorithm"] == "dpok"
    assert [s for s, *_ in logged] == [0, 1] and len(grids) == 3  # two step grids + before/after
    first = logged[0][1]
    for k in ("reward/r_sem", "reward/combined", "update/kl", "update/grad_norm", "update/clip_frac", "update/ratio_min",
              "update/ratio_max"):
        assert k in first
    # the first minibatch is on-policy, the later ones are not; the logged count is the counted one
    assert first["update/optimizer_steps"] == per_iteration[0]
    assert first["update/ratio_max"] > first["update/ratio_min"]
    assert logged[1][1]["update/kl"] > 0
    feats, pids = load_memory_bank(p.rl.bank)
    torch.testing.assert_close(feats.norm(dim=1), torch.ones(len(feats)))
    assert len(feats) == len(member_split(p.data)[0])  # the bank holds the member images only
    merged, class_pids = load_rl(p.rl.out_dir)
    assert class_pids == sorted(set(pids.tolist()))
    assert not any("lora_" in n for n, _ in merged.transformer.named_parameters())  # merged for sampling
    lora, _ = load_rl(p.rl.out_dir, merge=False)
    assert any("lora_B" in n for n, _ in lora.transformer.named_parameters())
    x = torch.randn(2, *merged.sample_shape)
    t, y = torch.tensor([500, 500]), torch.tensor([0, 1])
    torch.testing.assert_close(merged.transformer(x, timestep=t, class_labels=y).sample,
                               lora.transformer(x, timestep=t, class_labels=y).sample, atol=1e-5, rtol=1e-4)


def test_draft_keeps_the_best_validated_policy_and_stops_on_patience(stack, monkeypatch):
    """DRaFT with validation after every step: the saved adapter is the policy as it was at the best
    validation (scripted here), and `rl.patience` validations without a gain end the run."""
    import dataclasses

    from peft import get_peft_model_state_dict
    from safetensors.torch import load_file

    import rgsyn.rl.loop as loop
    from rgsyn.generator.adapters import TABLE

    p, tmp = stack
    seen = []

    def scripted(values):
        def fake(sampler, setup, rp):
            model = setup.bundle.transformer
            seen.append({**{k: v.detach().clone() for k, v in get_peft_model_state_dict(model).items()},
                         TABLE: label_tables(model)[0].embedding_table.weight.detach().clone()})
            return values[len(seen) - 1]
        return fake

    for values, patience, kept, taken in (([0.1, 0.5, 0.2], 0, 1, 2), ([0.5, 0.4, 0.3, 0.2], 1, 0, 1)):
        seen.clear()
        monkeypatch.setattr(loop, "validation_reward", scripted(values))
        q = dataclasses.replace(p, rl=dataclasses.replace(p.rl, algorithm="draft", steps=len(values) - 1, val_every=1,
                                                          patience=patience, out_dir=str(tmp / f"draft{patience}")))
        out = loop.run_rl(q, progress=False)
        assert (out["kept_step"], out["steps_taken"]) == (kept, taken)
        assert [v["r_sem"] for v in out["validation"]] == values[:taken + 1]
        saved = load_file(str(tmp / f"draft{patience}" / "adapter.safetensors"))
        assert saved.keys() == seen[kept].keys()
        for k in saved:
            torch.testing.assert_close(saved[k], seen[kept][k])
        assert any(not torch.equal(seen[1][k], seen[0][k]) for k in saved)  # the step did move the policy


def test_rl_without_the_held_out_evaluation_saves_the_same_adapter(stack):
    """The ablation's RL rungs skip the before / after evaluation (`evaluate=False`): it draws from its
    own fixed seeds, so the saved policy is the same tensors, and the numbers hold no comparison."""
    import dataclasses

    from safetensors.torch import load_file

    from rgsyn.rl.loop import run_rl

    p, tmp = stack
    saved, outs = [], []
    for evaluate in (True, False):
        q = dataclasses.replace(p, rl=dataclasses.replace(p.rl, algorithm="draft", steps=2, val_every=1,
                                                          out_dir=str(tmp / f"rl-evaluate-{evaluate}")))
        outs.append(run_rl(q, progress=False, evaluate=evaluate))
        saved.append(load_file(str(tmp / f"rl-evaluate-{evaluate}" / "adapter.safetensors")))
    assert saved[0].keys() == saved[1].keys()
    for k in saved[0]:
        assert torch.equal(saved[0][k], saved[1][k]), k
    assert "before" in outs[0] and "before" not in outs[1] and outs[1]["eval"]["samples"] == 0
    assert [v["r_sem"] for v in outs[0]["validation"]] == [v["r_sem"] for v in outs[1]["validation"]]


def test_nearest_classes_known_answer():
    from rgsyn.generator.coldstart import nearest_classes

    e = torch.eye(4)
    g = torch.Generator().manual_seed(0)
    class_feats = torch.cat([e[c] + 0.1 * torch.randn(3, 4, generator=g) for c in range(4)])  # 3 samples per class
    class_labels = torch.arange(4).repeat_interleave(3)
    protos = torch.stack([e[2] + 0.2 * e[1], e[0], e[3] - 0.3 * e[0]])  # identities nearest classes 2, 0, 3
    best, cos = nearest_classes(protos, class_feats, class_labels, 4)
    assert best.tolist() == [2, 0, 3] and bool((cos > 0.8).all())


@pytest.mark.parametrize("init", ["nearest", "mean"])
def test_initial_rows_come_from_the_pretrained_table(stack, init):
    from rgsyn.data.images import load_images
    from rgsyn.data.records import relabel
    from rgsyn.encoder import load_encoder
    from rgsyn.generator.coldstart import generate, initial_rows

    p, _ = stack
    run_prior(p, progress=False)  # resumes: trained once per stack
    bundle = load_dit(p.prior.out_dir)
    old = label_tables(bundle.transformer)[0].embedding_table.weight.detach().clone()  # (6 + 1, D)
    members, _ = member_split(p.data)
    classes, table = relabel([r.pid for r in members])
    pids, labels = sorted(table), torch.from_numpy(classes)
    enc = load_encoder(p.reference.out_dir)
    real = load_images([r.path for r in members], enc.cfg.height, enc.cfg.width)
    c = dataclasses.replace(p.coldstart, init=init)
    cls = torch.arange(6).repeat_interleave(2)
    samples = (generate(bundle, cls, p.sampler, 0), cls) if init == "nearest" else None
    rows, info = initial_rows(bundle, c, samples, enc, real, labels, len(pids))
    assert rows.shape == (len(pids) + 1, old.shape[1]) and torch.equal(rows[-1], old[-1])  # the pretrained null row
    if init == "mean":
        torch.testing.assert_close(rows[:-1], old[:-1].mean(0).expand(len(pids), -1))
    else:
        assert len(info["classes"]) == len(pids) and torch.equal(rows[:-1], old[info["classes"]])
    zero = dataclasses.replace(p.coldstart, init="zero")
    assert initial_rows(bundle, zero, None, enc, real, labels, len(pids)) == (None, {"init": "zero"})
