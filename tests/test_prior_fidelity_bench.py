"""bench/prior_fidelity.py's sets: the held-out identities are the general-domain classes after the prior's
own, renumbered from 0, and its truth renders are captures neither the prior nor the cold start saw."""
import torch

from rgsyn.config import load_params
from rgsyn.eval.fidelity import PRIOR_TRUTH_FIRST
from rgsyn.generator.prior import general_domain
from tests.conftest import MICRO_GEN, load_bench, micro_params


def test_held_out_identities_and_their_truth(tmp_path):
    bench = load_bench("prior_fidelity")
    p = load_params(micro_params(tmp_path, **MICRO_GEN))  # prior.num_classes 6
    imgs, cls = bench.renders(p, range(6, 8), 3, 0)
    assert cls.tolist() == [0, 0, 0, 1, 1, 1] and imgs.shape[0] == 6
    everything, labels = general_domain(p, 8, 3, p.prior.seed, progress=False)
    assert torch.equal(imgs, everything[labels >= 6])  # classes 6 and 7 of the general stream, as rendered
    truth, tcls = bench.renders(p, range(6, 8), 2, PRIOR_TRUTH_FIRST)
    assert tcls.tolist() == [0, 0, 1, 1]
    assert not any(torch.equal(t, x) for t in truth for x in everything)


def test_train_more_saves_each_round_and_resumes(tmp_path):
    from rgsyn.generator.dit import load_dit, save_dit
    from rgsyn.generator.prior import build_prior

    bench = load_bench("prior_fidelity")
    p = load_params(micro_params(tmp_path, **MICRO_GEN))
    torch.manual_seed(0)
    save_dit(build_prior(p.prior), tmp_path / "prior")
    seen = []
    bench.train_more(p, str(tmp_path / "prior"), 4, 2, str(tmp_path / "more"), seen.append)
    assert seen == [str(tmp_path / "more/prior+2"), str(tmp_path / "more/prior+4")]
    a, b, base = (load_dit(f).transformer.state_dict() for f in (*seen, tmp_path / "prior"))
    assert any(not torch.equal(a[k], base[k]) for k in base) and any(not torch.equal(a[k], b[k]) for k in a)
    again = []  # the state says 4 steps are done: nothing more trains, the same weights come out
    bench.train_more(p, str(tmp_path / "prior"), 4, 4, str(tmp_path / "more"), again.append)
    c = load_dit(again[0]).transformer.state_dict()
    assert all(torch.equal(b[k], c[k]) for k in b)


def test_export_checkpoint_loads_the_ema_weights(tmp_path):
    from safetensors.torch import load_file

    from rgsyn.generator.dit import load_dit
    from rgsyn.generator.prior import build_prior
    from rgsyn.generator.train import train_denoiser, trainable

    bench = load_bench("prior_fidelity")
    p = load_params(micro_params(tmp_path, **MICRO_GEN))
    q, bundle = p.prior, build_prior(p.prior)
    imgs, labels = general_domain(p, q.num_classes, 2, q.seed, progress=False)
    imgs = torch.nn.functional.interpolate(imgs.float(), (q.height, q.width)).to(torch.uint8)
    train_denoiser(bundle, imgs, labels, steps=3, batch=4, lr=1e-3, weight_decay=0.0, warmup=0, ema_decay=0.5,
                   label_dropout=0.1, seed=0, flip=True, ckpt_dir=tmp_path / "ckpt", ckpt_every=3, config={},
                   progress=False)
    folder = bench.export_checkpoint(p, str(tmp_path / "ckpt"), str(tmp_path / "work"))
    assert folder.endswith("ckpt+3")
    ema, live = load_file(str(tmp_path / "ckpt/ema.safetensors")), trainable(bundle.transformer)
    out = trainable(load_dit(folder).transformer)
    assert all(torch.equal(out[k], ema[k]) for k in ema)  # the EMA, not the live weights
    assert any(not torch.equal(live[k], ema[k]) for k in ema)
