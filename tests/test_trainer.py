import json

import pytest
import torch

from rgsyn.config import load_params
from rgsyn.data.images import load_images
from rgsyn.data.stage import prepare
from rgsyn.data.records import relabel
from rgsyn.downstream.reid import train_reid
from rgsyn.downstream.trainer import aggregate, schedule
from rgsyn.encoder import extract_features, load_encoder, save_encoder
from tests.conftest import micro_params


@pytest.fixture(scope="module")
def micro(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("micro")
    p = load_params(micro_params(tmp))
    prepare(p.data)
    from rgsyn.data.layouts import read_index

    return p, read_index(p.data.index), tmp


def test_train_is_deterministic_and_checkpoint_round_trips(micro):
    p, ds, tmp = micro
    m1, r1 = train_reid(ds, p.reference.train, seed=0, progress=False)
    m2, r2 = train_reid(ds, p.reference.train, seed=0, progress=False)
    for k in ("mAP", "rank1", "mINP"):
        assert r1[k] == r2[k] and 0.0 <= r1[k] <= 1.0
    imgs = load_images([r.path for r in ds.query], p.reference.train.height, p.reference.train.width)
    f1 = extract_features(m1, imgs)
    assert f1.shape == (len(ds.query), p.reference.train.embed_dim)
    torch.testing.assert_close(f1.norm(dim=1), torch.ones(len(ds.query)))
    save_encoder(m1, tmp / "enc", seed=0)
    meta = json.loads((tmp / "enc/encoder.json").read_text())
    assert meta["config"]["backbone"] == p.reference.train.backbone and "git_sha" in meta
    f_loaded = extract_features(load_encoder(tmp / "enc"), imgs)
    torch.testing.assert_close(f_loaded, f1)


def test_an_encoder_folder_initialises_the_backbone_only(tmp_path):
    """pretrained_path may name an rgsyn encoder folder (the auditor's): its backbone weights load, the
    head starts fresh, and a folder of another backbone is refused with the key to change."""
    from rgsyn.encoder import EncoderConfig, IdentityEncoder

    torch.manual_seed(0)
    src = IdentityEncoder(EncoderConfig("test_resnet", 7, 16, 32, 16))
    save_encoder(src, tmp_path / "enc")
    torch.manual_seed(1)
    dst = IdentityEncoder(EncoderConfig("test_resnet", 3, 8, 32, 16), str(tmp_path / "enc"))
    for k, v in src.backbone.state_dict().items():
        assert torch.equal(dst.backbone.state_dict()[k], v), k
    assert dst.classifier.weight.shape == (3, 8) and dst.proj.weight.shape[0] == 8
    conv = next(k for k, v in src.backbone.state_dict().items() if v.ndim == 4)
    torch.manual_seed(1)
    fresh = IdentityEncoder(EncoderConfig("test_resnet", 3, 8, 32, 16))
    assert not torch.equal(fresh.backbone.state_dict()[conv], src.backbone.state_dict()[conv])  # not by chance
    meta = json.loads((tmp_path / "enc/encoder.json").read_text())
    meta["config"]["backbone"] = "resnet18"
    (tmp_path / "enc/encoder.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="train.backbone: resnet18"):
        IdentityEncoder(EncoderConfig("test_resnet", 3, 8, 32, 16), str(tmp_path / "enc"))
    with pytest.raises(FileNotFoundError, match="not an rgsyn encoder"):
        IdentityEncoder(EncoderConfig("test_resnet", 3, 8, 32, 16), str(tmp_path))


def test_training_lowers_loss(micro):
    p, ds, _ = micro
    import dataclasses

    cfg = dataclasses.replace(p.reference.train, epochs=8)
    losses = []
    train_reid(ds, cfg, seed=1, progress=False, log=lambda m, s: losses.append(m["loss/loss"]))
    assert len(losses) == 8 and losses[-1] < losses[0]


def test_lr_schedule_and_helpers(micro):
    p, _, _ = micro
    import dataclasses

    cfg = dataclasses.replace(p.reference.train, epochs=10, warmup_epochs=2, lr=0.5)
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=cfg.lr)
    sched, iters, lrs = schedule(opt, cfg, iters=3), 3, []
    for _ in range(cfg.epochs * iters):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(0.1 * cfg.lr)  # warm-up from 10 %
    assert lrs[cfg.warmup_epochs * iters] == pytest.approx(cfg.lr)  # full rate after warm-up
    assert max(lrs) == pytest.approx(cfg.lr) and lrs[-1] > 0.01 * cfg.lr  # cosine down towards 1 %
    assert opt.param_groups[0]["lr"] == pytest.approx(0.01 * cfg.lr)
    y, table = relabel([7, 3, 7, 9])
    assert y.tolist() == [1, 0, 1, 2] and table == {3: 0, 7: 1, 9: 2}
    agg = aggregate([{"mAP": 0.2, "rank1": 0.5, "rank5": 0.6, "mINP": 0.1},
                     {"mAP": 0.4, "rank1": 0.7, "rank5": 0.8, "mINP": 0.3}])
    assert agg["mAP_mean"] == pytest.approx(0.3) and agg["mAP_std"] == pytest.approx(0.1414213, abs=1e-6)
