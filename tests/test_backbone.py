"""The `backbone` stage: the trainers' general-domain pretraining, through the auditor's training body
(rgsyn.pretrain.train_general_encoder) on another seed, so it is never the auditor's weights; a
trainer's `train.pretrained_path` naming its folder starts from it."""
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from rgsyn.config import load_params
from tests.conftest import micro_params


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    import rgsyn.pretrain as pretrain
    import rgsyn.privacy.auditor as auditor_mod
    import tasks.backbone as backbone_task
    from rgsyn.data.stage import prepare

    tmp = tmp_path_factory.mktemp("backbone")
    p = load_params(micro_params(tmp))
    prepare(p.data)
    calls = []

    def spy(p, section, name, **kw):
        calls.append(name)
        return pretrain.train_general_encoder(p, section, name, **{**kw, "progress": False})

    mp = pytest.MonkeyPatch()
    mp.setattr(auditor_mod, "train_general_encoder", spy)
    mp.setattr(backbone_task, "train_general_encoder", spy)
    try:
        aud = auditor_mod.run_auditor(p, progress=False)
        bb = backbone_task.train_backbone.fn(p)
    finally:
        mp.undo()
    return p, tmp, calls, aud, bb


def test_backbone_and_auditor_share_one_training_body(trained):
    p, _, calls, aud, bb = trained
    assert calls == ["auditor", "backbone"]
    assert (p.backbone.seed, p.backbone.train.seeds) != (p.auditor.seed, p.auditor.train.seeds)
    for out, section, name in ((aud, p.auditor, "auditor"), (bb, p.backbone, "backbone")):
        meta = json.loads((Path(section.out_dir) / "encoder.json").read_text())
        assert out["out_dir"] == section.out_dir and meta["stage"] == name and meta["general_seed"] == section.seed
        assert meta["dataset"] == "general-domain" and meta["target_test"] == out["target_test"]
        assert 0 <= out["target_test"]["mAP"] <= 1


def test_another_seed_renders_other_identities_and_ends_in_other_weights(trained):
    from rgsyn.generator.prior import general_domain

    p, _, _, _, _ = trained
    x0, y0 = general_domain(p, 3, 2, p.auditor.seed, progress=False)
    x1, y1 = general_domain(p, 3, 2, p.backbone.seed, progress=False)
    assert torch.equal(y0, y1) and x0.shape == x1.shape
    for c in range(3):  # no class of one seed is a class of the other: other identities, not a reshuffle
        for d in range(3):
            assert not torch.equal(x0[y0 == c], x1[y1 == d])
    a = load_file(f"{p.auditor.out_dir}/encoder.safetensors")
    b = load_file(f"{p.backbone.out_dir}/encoder.safetensors")
    assert a.keys() == b.keys()
    convs = [k for k, v in a.items() if k.startswith("backbone.") and v.ndim == 4]
    assert convs and all(not torch.allclose(a[k], b[k]) for k in convs)


def test_pretrained_path_naming_the_backbone_starts_a_trainer_from_it(trained, monkeypatch):
    """One params value switches a trainer from random init to the backbone: its encoder starts from
    the backbone's `backbone.*` weights (the head fresh), as it would from an ImageNet checkpoint."""
    import rgsyn.downstream.trainer as trainer
    from rgsyn.data.layouts import read_index
    from rgsyn.downstream.reid import train_reid

    p, tmp, _, _, _ = trained
    q = load_params(tmp / "params.yaml", {"reference.train.pretrained_path": p.backbone.out_dir})
    seen = {}

    def no_fit(model, *a, **kw):  # the model as the trainer built it, before any step
        seen.update({k: v.detach().clone() for k, v in model.backbone.state_dict().items()})
        return {"train_seconds": 0.0}

    monkeypatch.setattr(trainer, "fit", no_fit)
    train_reid(read_index(q.data.index), q.reference.train, seed=0, progress=False)
    want = {k.removeprefix("backbone."): v for k, v in load_file(f"{p.backbone.out_dir}/encoder.safetensors").items()
            if k.startswith("backbone.")}
    assert seen.keys() == want.keys() and all(torch.equal(seen[k], want[k]) for k in want)
    aud = load_file(f"{p.auditor.out_dir}/encoder.safetensors")
    conv = next(k for k, v in want.items() if v.ndim == 4)
    assert not torch.equal(seen[conv], aud[f"backbone.{conv}"])  # the backbone, not the auditor


def test_the_auditors_seeds_would_give_the_auditors_weights(trained, tmp_path):
    """The control: the shared body is deterministic, so the backbone's seeds alone keep it apart from
    the auditor (at the auditor's seeds it would be the auditor's weights exactly)."""
    from rgsyn.pretrain import train_general_encoder

    p, tmp, _, _, _ = trained
    q = load_params(tmp / "params.yaml", {"backbone.seed": p.auditor.seed, "backbone.out_dir": str(tmp_path / "same"),
                                          "backbone.train.seeds": list(p.auditor.train.seeds)})
    train_general_encoder(q, q.backbone, "backbone", progress=False)
    a = load_file(f"{p.auditor.out_dir}/encoder.safetensors")
    b = load_file(str(tmp_path / "same/encoder.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
