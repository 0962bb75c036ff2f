"""The `compute` code paths on CPU (their speed is a GPU matter): bf16 autocast in the sampler, the
feature extractor and the trainer with fp32 log-probs and losses; channels-last; torch.compile; DiT
gradient checkpointing; TF32 switches. The fp32 defaults must leave results exactly as without them."""
import dataclasses

import pytest
import torch

from rgsyn.config import ComputeParams
from rgsyn.devices import autocast, configure, prepare_model
from rgsyn.encoder import EncoderConfig, IdentityEncoder, extract_features
from rgsyn.generator.dit import DiTBundle, build_dit, make_scheduler
from rgsyn.generator.sampler import Sampler

FP32 = ComputeParams("fp32", False, False, "", False, 1)


def tiny_bundle():
    torch.manual_seed(0)
    m = build_dit("tiny", 8, 4, num_classes=5)
    with torch.no_grad():  # diffusers zero-inits the output layers: randomise so outputs depend on inputs
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return DiTBundle(m.eval(), make_scheduler("epsilon", "squaredcos_cap_v2"), None, 1)


def test_bf16_sampler_keeps_log_probs_in_fp32_and_close_to_fp32():
    b = tiny_bundle()
    y, seeds = torch.tensor([0, 3]), [1, 2]
    ref = Sampler(b, 4, eta=1.0, guidance=2.0).sample(y, seeds, record=True)
    bf = Sampler(b, 4, eta=1.0, guidance=2.0, precision="bf16").sample(y, seeds, record=True)
    assert bf.log_probs.dtype == torch.float32 and bf.x0.dtype == torch.float32
    torch.testing.assert_close(bf.x0, ref.x0, atol=0.1, rtol=0.1)
    # the fp32 path is the sampler without any precision argument, bit for bit
    assert torch.equal(Sampler(b, 4, 1.0, 2.0, precision="fp32").sample(y, seeds).x0, ref.x0)
    with pytest.raises(ValueError, match="compute.precision"):
        Sampler(b, 4, 1.0, 2.0, precision="fp16").sample(y, seeds)


def test_bf16_features_close_and_channels_last_and_compile_equal():
    torch.manual_seed(0)
    enc = IdentityEncoder(EncoderConfig("test_resnet", 5, 16, 32, 16)).eval()
    imgs = torch.randint(0, 255, (4, 3, 32, 16), dtype=torch.uint8)
    f32 = extract_features(enc, imgs)
    bf = extract_features(enc, imgs, precision="bf16")
    assert bf.dtype == torch.float32 and torch.nn.functional.cosine_similarity(bf, f32).min() > 0.97
    cl = prepare_model(enc, dataclasses.replace(FP32, channels_last=True), "cpu")
    x = torch.randn(2, 3, 32, 16)
    with torch.no_grad():
        torch.testing.assert_close(cl(x), enc(x), atol=1e-5, rtol=1e-5)
        compiled = prepare_model(enc, dataclasses.replace(FP32, compile="eager"), "cpu")
        assert compiled is not enc
        torch.testing.assert_close(compiled(x), enc(x))
    assert prepare_model(enc, FP32, "cpu") is enc


def test_trainer_under_bf16_and_fp32_compute(tmp_path):
    from rgsyn.config import load_params
    from rgsyn.data.layouts import read_index
    from rgsyn.data.stage import prepare
    from rgsyn.downstream.reid import train_reid
    from tests.conftest import micro_params

    p = load_params(micro_params(tmp_path))
    prepare(p.data)
    ds = read_index(p.data.index)
    cfg = dataclasses.replace(p.reference.train, epochs=1)
    _, plain = train_reid(ds, cfg, 0, progress=False)
    _, fp32 = train_reid(ds, cfg, 0, progress=False, compute=FP32)
    assert plain["mAP"] == fp32["mAP"]  # the default compute changes nothing
    losses = []
    _, bf = train_reid(ds, cfg, 0, progress=False, compute=dataclasses.replace(FP32, precision="bf16"),
                       log=lambda m, s: losses.append(m["loss/loss"]))
    assert 0 <= bf["mAP"] <= 1 and all(torch.isfinite(torch.tensor(losses)))


def test_gradient_checkpointing_gives_the_same_gradients():
    b = tiny_bundle()
    x, t, y = torch.randn(2, 4, 8, 8), torch.tensor([10, 500]), torch.tensor([1, 2])

    def grads():
        b.transformer.zero_grad()
        b.transformer.train()
        b.transformer(x, timestep=t, class_labels=y).sample.pow(2).sum().backward()
        return [p.grad.clone() for p in b.transformer.parameters() if p.grad is not None]
    plain = grads()
    b.transformer.enable_gradient_checkpointing()
    for a, c in zip(plain, grads()):
        torch.testing.assert_close(a, c)


def test_tf32_switches_and_autocast_contexts():
    configure(dataclasses.replace(FP32, tf32=True))
    assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
    configure(FP32)
    assert not torch.backends.cuda.matmul.allow_tf32
    with autocast("cpu", "bf16"):
        assert (torch.randn(2, 3) @ torch.randn(3, 2)).dtype == torch.bfloat16
    with autocast("cpu", "fp32"):
        assert (torch.randn(2, 3) @ torch.randn(3, 2)).dtype == torch.float32


def test_cpu_bf16_convolution_is_right_on_small_feature_maps():
    # the test encoder's layer4 entry: oneDNN's bf16 kernel on AMX CPUs returned 1e37 and NaN here
    g = torch.Generator().manual_seed(0)
    x, w = torch.randn(8, 192, 4, 2, generator=g), 0.1 * torch.randn(96, 192, 3, 3, generator=g)
    want = torch.nn.functional.conv2d(x, w, None, 2, 1)
    for _ in range(3):  # the wrong kernel was not even deterministic
        with autocast("cpu", "bf16"):
            got = torch.nn.functional.conv2d(x, w, None, 2, 1)
        assert got.dtype == torch.bfloat16
        assert (got.float() - want).abs().max() < 0.05 * want.abs().max()
    assert torch.backends.mkldnn.enabled  # the switch is the context's alone


def test_cpu_bf16_switches_on_entering_the_context_not_on_the_call():
    ctx = autocast("cpu", "bf16")
    assert torch.backends.mkldnn.enabled and not torch.is_autocast_enabled("cpu")
    with ctx:
        assert not torch.backends.mkldnn.enabled and torch.is_autocast_enabled("cpu")
    assert torch.backends.mkldnn.enabled and not torch.is_autocast_enabled("cpu")
