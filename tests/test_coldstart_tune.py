"""Cold start beyond the label table (`coldstart.tune: lora | full`): what it saves is what it loads
(the merged generator predicts what the trained one did), the paper's `table` stays bit-for-bit the
frozen backbone, and only the named tensors move."""
import pytest
import torch

from rgsyn.config import load_params
from rgsyn.generator.adapters import make_trainable
from rgsyn.generator.coldstart import load_coldstart, save_coldstart
from rgsyn.generator.dit import label_tables, load_dit, reset_class_embedding, save_dit
from rgsyn.generator.prior import build_prior
from rgsyn.generator.train import train_denoiser, trainable
from tests.conftest import MICRO_GEN, micro_params


@pytest.fixture(scope="module")
def prior(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tune")
    p = load_params(micro_params(tmp, **MICRO_GEN))
    torch.manual_seed(0)
    save_dit(build_prior(p.prior), tmp / "prior")
    return tmp / "prior", tmp


def _predict(model, x, t, y):
    with torch.no_grad():
        return model(x, timestep=t, class_labels=y).sample


@pytest.mark.parametrize("tune", ["lora", "full"])
def test_tuned_coldstart_round_trips(prior, tune):
    path, tmp = prior
    bundle = load_dit(path)
    reset_class_embedding(bundle.transformer, 5)
    targets = ["to_q", "to_k", "to_v", "to_out.0"]
    make_trainable(bundle.transformer, 2, tune == "full", targets, seed=0)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # what training would leave: every trainable tensor moved
        for v in trainable(bundle.transformer).values():
            v.add_(0.05 * torch.randn(v.shape, generator=g))
    x = torch.randn(3, *bundle.sample_shape, generator=g)
    t, y = torch.tensor([10, 500, 900]), torch.tensor([0, 4, 5])  # 5 = the null row
    want = _predict(bundle.transformer.eval(), x, t, y)
    save_coldstart(bundle, tmp / f"cs-{tune}", str(path), [3, 7, 8, 11, 12], tune, 2, targets)
    loaded, pids = load_coldstart(tmp / f"cs-{tune}")
    assert pids == [3, 7, 8, 11, 12]
    torch.testing.assert_close(_predict(loaded.transformer.eval(), x, t, y), want, rtol=1e-4, atol=1e-5)
    # loaded as the paper's cold start is: the table alone trainable, for RL to add its own adapters
    assert list(trainable(loaded.transformer)) == ["transformer_blocks.0.norm1.emb.class_embedder.embedding_table.weight"]
    assert not any("lora_" in k for k, _ in loaded.transformer.named_parameters())


@pytest.mark.parametrize("tune", ["table", "lora"])
def test_only_the_tuned_tensors_move(prior, tune):
    path, _ = prior
    bundle = load_dit(path)
    base = {k: v.clone() for k, v in bundle.transformer.state_dict().items()}
    reset_class_embedding(bundle.transformer, 4)
    if tune != "table":
        make_trainable(bundle.transformer, 2, False, ["to_q", "to_v"], seed=0)
    images = torch.randint(0, 256, (8, 3, 32, 16), dtype=torch.uint8)
    ema = train_denoiser(bundle, images, torch.arange(8) % 4, steps=3, batch=4, lr=0.1, weight_decay=0.0, warmup=1,
                         ema_decay=0.0, label_dropout=0.1, seed=0, flip=False, ckpt_dir=None, ckpt_every=0,
                         config={}, progress=False, body_lr=None if tune == "table" else 1e-2)
    ema.copy_to(trainable(bundle.transformer).values())
    assert torch.count_nonzero(label_tables(bundle.transformer)[0].embedding_table.weight) > 0
    state = {k.replace(".base_layer", ""): v for k, v in bundle.transformer.state_dict().items()}  # peft's names
    moved = {k for k, v in base.items() if "class_embedder" not in k and not torch.equal(state[k], v)}
    assert moved == set()  # peft keeps base weights apart: the backbone itself never changes
    lora = {k for k in state if "lora_B" in k and torch.count_nonzero(state[k]) > 0}
    if tune == "table":
        assert not lora
    else:
        assert lora and all(any(f".{m}." in k for m in ("to_q", "to_v")) for k in lora)
