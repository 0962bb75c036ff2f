"""DiT loading, class-embedding reset and the sampler against diffusers' own schedulers."""
import pytest
import torch
from diffusers import AutoencoderKL, DDIMScheduler, DiTPipeline, DiTTransformer2DModel

from rgsyn.generator.dit import load_dit, reset_class_embedding
from rgsyn.generator.dit import DiTBundle, build_dit, label_tables, make_scheduler, null_label, pack, unpack
from rgsyn.generator.sampler import Sampler, ddim_step, per_sample_seeds, predict


def tiny_dit(num_classes=10, in_channels=4, sample_size=8, learned_sigma=False):
    torch.manual_seed(0)
    m = DiTTransformer2DModel(num_attention_heads=2, attention_head_dim=8, in_channels=in_channels,
                              out_channels=in_channels * (2 if learned_sigma else 1), num_layers=2,
                              sample_size=sample_size, patch_size=2, num_embeds_ada_norm=num_classes)
    with torch.no_grad():  # diffusers zero-inits the adaLN/output layers: randomise so outputs depend on inputs
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return m


def tiny_vae():
    torch.manual_seed(0)
    return AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
                         up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 8),
                         latent_channels=4, norm_num_groups=8, layers_per_block=1)


def test_load_dit_saved_by_diffusers_pipeline_and_bare_transformer(tmp_path):
    dit = tiny_dit()
    DiTPipeline(transformer=dit, vae=tiny_vae(), scheduler=DDIMScheduler()).save_pretrained(tmp_path / "pipe")
    b = load_dit(tmp_path / "pipe")
    assert b.vae is not None and b.pack == 1 and b.channels == 4 and b.sample_shape == (4, 8, 8)
    x, t, y = torch.randn(2, 4, 8, 8), torch.tensor([10, 500]), torch.tensor([1, 3])
    with torch.no_grad():
        torch.testing.assert_close(b.transformer(x, t, y).sample, dit.eval()(x, t, y).sample)
    dit.save_pretrained(tmp_path / "bare")
    assert load_dit(tmp_path / "bare").vae is None
    with pytest.raises(FileNotFoundError, match="no DiT checkpoint here"):
        load_dit(tmp_path)


def test_reset_class_embedding_shares_one_zero_table():
    m = reset_class_embedding(tiny_dit(num_classes=10), 7)
    tables = label_tables(m)
    assert all(t is tables[0] for t in tables)
    w = tables[0].embedding_table.weight
    assert w.shape[0] == 8 and torch.count_nonzero(w) == 0 and null_label(m) == 7
    trainable = [n for n, p in m.named_parameters() if p.requires_grad]
    assert trainable == ["transformer_blocks.0.norm1.emb.class_embedder.embedding_table.weight"]
    # the table really conditions every block: a gradient reaches it through the loss
    m(torch.randn(2, 4, 8, 8), torch.tensor([3, 4]), torch.tensor([1, 6])).sample.square().mean().backward()
    assert w.grad is not None and w.grad[[1, 6]].abs().sum() > 0 and w.grad[0].abs().sum() == 0


def test_label_dropout_never_fires_in_train_mode():
    m = tiny_dit(num_classes=10).train()
    assert label_tables(m)[0].dropout_prob == 0.1  # diffusers' default: drops 10 % per block in train mode
    b = DiTBundle(m, make_scheduler(), None, 1)
    x, t, y = torch.randn(64, 4, 8, 8), torch.full((64,), 300), torch.arange(64) % 10
    with torch.no_grad():
        outs = [predict(b, x, t, y) for _ in range(3)]
        ref = predict(DiTBundle(m.eval(), b.scheduler, None, 1), x, t, y)
    for o in outs:
        torch.testing.assert_close(o, ref)


def test_pack_unpack_round_trip():
    x = torch.arange(2 * 3 * 8 * 4, dtype=torch.float32).view(2, 3, 8, 4)
    p = pack(x, 2)
    assert p.shape == (2, 6, 4, 4)
    assert torch.equal(p[0, :3, 1, 2], x[0, :, 2, 2]) and torch.equal(p[0, 3:, 1, 2], x[0, :, 3, 2])
    assert torch.equal(unpack(p, 2), x)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_ddim_step_matches_diffusers(prediction_type, eta):
    """ddim_step against DDIMScheduler.step on every grid step: the sample (same noise), the mean (no
    noise) and x0, for each prediction type (`sample` is what the shipped prior predicts)."""
    sched = make_scheduler(prediction_type, "squaredcos_cap_v2")
    ref = DDIMScheduler.from_config(sched.config)
    ref.set_timesteps(10)
    torch.manual_seed(1)
    x, out, z = torch.randn(3, 4, 8, 8), torch.randn(3, 4, 8, 8), torch.randn(3, 4, 8, 8)
    for t in ref.timesteps:
        tb = t.repeat(3)
        mine = ddim_step(out, tb, tb - 100, x, sched.alphas_cumprod, eta, prediction_type, noise=z)
        theirs = ref.step(out, t, x, eta=eta, variance_noise=z)
        mean = ref.step(out, t, x, eta=eta, variance_noise=torch.zeros_like(x)).prev_sample
        torch.testing.assert_close(mine.prev, theirs.prev_sample, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(mine.mean, mean, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(mine.x0, theirs.pred_original_sample, atol=1e-5, rtol=1e-5)
        if int(t) - 100 < 0:  # final step: alpha_bar_prev = 1, no noise, no log-prob
            assert torch.all(mine.std == 0) and mine.log_prob is None
        elif eta > 0:
            assert torch.all(mine.std > 0) and mine.log_prob.shape == (3,)
            assert not torch.allclose(mine.prev, mine.mean)  # the noise did enter


@pytest.mark.parametrize("eta", [1.0, 0.5])
def test_recorded_log_probs_equal_recomputed(eta):
    b = DiTBundle(tiny_dit(learned_sigma=True), make_scheduler("epsilon", "squaredcos_cap_v2"), None, 1)
    s = Sampler(b, num_steps=5, eta=eta, guidance=2.0)
    y = torch.tensor([0, 3, 5])
    traj = s.sample(y, generator=torch.Generator().manual_seed(0), record=True)
    assert traj.latents.shape == (6, 3, 4, 8, 8) and traj.log_probs.shape == (4, 3)  # last step has none
    torch.testing.assert_close(traj.latents[-1], traj.x0)
    b.transformer.train()  # RL recomputes in train mode: nothing may change
    for i, t in enumerate(s.timesteps[:-1]):
        again = s.step(traj.latents[i], t, y, prev=traj.latents[i + 1])
        torch.testing.assert_close(again.log_prob, traj.log_probs[i], atol=1e-5, rtol=0)
    # batched timesteps: one call scoring a different step for every sample
    idx = torch.tensor([0, 2, 3])
    xt = traj.latents[idx, torch.arange(3)]
    prev = traj.latents[idx + 1, torch.arange(3)]
    mixed = s.step(xt, s.timesteps[idx], y, prev=prev)
    torch.testing.assert_close(mixed.log_prob, traj.log_probs[idx, torch.arange(3)], atol=1e-5, rtol=0)


def test_guidance_is_uncond_plus_scaled_difference():
    b = DiTBundle(tiny_dit(), make_scheduler(), None, 1)
    x, t, y = torch.randn(2, 4, 8, 8), torch.tensor([100, 700]), torch.tensor([2, 9])
    with torch.no_grad():
        cond = predict(b, x, t, y)
        uncond = predict(b, x, t, torch.full_like(y, null_label(b.transformer)))
        torch.testing.assert_close(predict(b, x, t, y, guidance=3.0), uncond + 3.0 * (cond - uncond),
                                   atol=1e-5, rtol=1e-5)


def test_sampler_deterministic_by_generator():
    b = DiTBundle(build_dit("tiny", 8, 6, num_classes=5), make_scheduler("v_prediction"), None, 2)
    s = Sampler(b, num_steps=4, eta=1.0)
    a = s.sample(torch.tensor([0, 1]), generator=torch.Generator().manual_seed(3)).x0
    c = s.sample(torch.tensor([0, 1]), generator=torch.Generator().manual_seed(3)).x0
    assert torch.equal(a, c) and a.shape == (2, 6, 8, 8)


def test_per_sample_seeds_make_a_sample_independent_of_its_batch():
    """Stochastic steps (eta 1): a sample's noise at every step comes from its own seed."""
    b = DiTBundle(build_dit("tiny", 8, 6, num_classes=5), make_scheduler("v_prediction"), None, 2)
    s = Sampler(b, num_steps=4, eta=1.0, guidance=2.0)
    seeds = per_sample_seeds(7, 3)
    assert seeds == per_sample_seeds(7, 3) and len(set(seeds)) == 3
    together = s.sample(torch.tensor([0, 1, 4]), seeds).x0
    alone = s.sample(torch.tensor([1]), seeds[1:2]).x0
    torch.testing.assert_close(alone[0], together[1], atol=1e-5, rtol=1e-5)
    swapped = s.sample(torch.tensor([4, 0]), [seeds[2], seeds[0]]).x0
    torch.testing.assert_close(swapped[0], together[2], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(together[0], s.sample(torch.tensor([0]), [seeds[0] + 1]).x0[0])
    imgs = s.images(torch.tensor([0, 1, 4]), seeds, batch=2)  # batching does not change the images
    assert torch.equal(imgs, s.images(torch.tensor([0, 1, 4]), seeds, batch=3))


def test_sdedit_runs_the_grid_steps_below_t(monkeypatch):
    """SDEdit with an oracle x0-predictor: the grid steps at or below t run, and the image comes back."""
    import rgsyn.generator.sampler as sm

    b = DiTBundle(build_dit("tiny", 8, 6, num_classes=5), make_scheduler("sample"), None, 2)
    s = Sampler(b, num_steps=10, eta=0.0)  # grid 900, 800, ..., 0
    x0 = torch.rand(2, 6, 8, 8) * 2 - 1
    seen = []

    def oracle(bundle, x, t, labels, guidance=1.0, model=None, precision="fp32", uncond_grad=True):
        seen.append(int(t[0]))
        return x0
    monkeypatch.setattr(sm, "predict", oracle)
    out = s.sample_from(x0, torch.randn(2, 6, 8, 8), torch.tensor([0, 1]), 350, [1, 2])
    assert seen == [300, 200, 100, 0]
    torch.testing.assert_close(out, x0, atol=1e-5, rtol=1e-5)


def test_tied_embeddings_save_untied_and_reload_identically(tmp_path):
    from rgsyn.generator.dit import save_dit, tie_block_embeddings

    m = tie_block_embeddings(build_dit("tiny", 8, 6, num_classes=5))
    assert m.transformer_blocks[1].norm1.emb is m.transformer_blocks[0].norm1.emb
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    b = DiTBundle(m.eval(), make_scheduler("v_prediction"), None, 2)
    save_dit(b, tmp_path / "p", note="x")
    loaded = load_dit(tmp_path / "p")
    assert loaded.pack == 2 and loaded.scheduler.config.prediction_type == "v_prediction"
    x, t, y = torch.randn(2, 6, 8, 8), torch.tensor([3, 900]), torch.tensor([0, 4])
    with torch.no_grad():
        torch.testing.assert_close(loaded.transformer(x, t, y).sample, m(x, t, y).sample)


def test_x_T_is_independent_of_every_step_noise():
    """x_T and the steps' noise come from two streams of a sample's seed, also where a group starts from
    one member's x_T (RL): x_T never repeats a step's noise."""
    from rgsyn.generator.sampler import stream_seed, X_T, STEPS

    b = DiTBundle(build_dit("tiny", 8, 6, num_classes=5), make_scheduler("sample"), None, 2)
    s = Sampler(b, num_steps=5, eta=1.0, guidance=2.0)
    seeds = per_sample_seeds(11, 4)
    labels = torch.tensor([0, 0, 0, 0])
    for start in (None, [seeds[0]] * 4):  # own x_T; one shared x_T per group (RL)
        x, noise = s.start(labels, seeds, start_seeds=start)
        steps = [noise() for _ in s.timesteps]
        for i in range(4):
            for n in steps:
                corr = torch.corrcoef(torch.stack([x[i].flatten(), n[i].flatten()]))[0, 1]
                assert abs(float(corr)) < 0.2, "x_T correlates with a step's noise"
        assert stream_seed(seeds[0], X_T) != stream_seed(seeds[0], STEPS)
    # the sampler's trajectory starts where `start` says, so the recorded x_T is that stream's
    traj = s.sample(labels, seeds, record=True, start_seeds=[seeds[0]] * 4)
    torch.testing.assert_close(traj.latents[0], s.start(labels, seeds, start_seeds=[seeds[0]] * 4)[0])
    assert torch.equal(traj.latents[0][0], traj.latents[0][3])  # the group shares x_T


@pytest.mark.parametrize("spacing, grid, stds_zero", [("leading", [800, 600, 400, 200, 0], [4]),
                                                      ("trailing", [999, 799, 599, 399, 199], [4]),
                                                      ("linspace", [999, 749, 500, 250, 0], [4])])
def test_spacing_is_diffusers_grid_and_each_step_goes_to_the_next(spacing, grid, stds_zero):
    from diffusers import DDIMScheduler

    b = DiTBundle(build_dit("tiny", 8, 6, num_classes=5), make_scheduler("sample", "squaredcos_cap_v2"), None, 2)
    s = Sampler(b, num_steps=5, eta=1.0, spacing=spacing)
    ddim = DDIMScheduler.from_config(b.scheduler.config, timestep_spacing=spacing)
    ddim.set_timesteps(5)
    assert s.timesteps.tolist() == grid == ddim.timesteps.tolist()
    assert s.prev_t(s.timesteps).tolist() == grid[1:] + [-1]
    assert [j for j, v in enumerate(s.stds.tolist()) if v == 0] == stds_zero  # only the last is deterministic
    # DDIM's std of a step, as diffusers computes it (eta * sigma_t), to the step's grid neighbour
    for j, t in enumerate(grid[:-1]):
        ab, abp = b.scheduler.alphas_cumprod[t], b.scheduler.alphas_cumprod[grid[j + 1]]
        want = ((1 - abp) / (1 - ab) * (1 - ab / abp)).sqrt()
        assert float(s.stds[j]) == pytest.approx(float(want), rel=1e-5)


def test_reset_class_embedding_starts_from_given_rows():
    rows = torch.randn(8, 16)  # 7 identities + the null row, the tiny DiT's width
    m = reset_class_embedding(tiny_dit(num_classes=10), 7, rows)
    tables = label_tables(m)
    assert all(t is tables[0] for t in tables) and torch.equal(tables[0].embedding_table.weight.detach(), rows)
    rows.zero_()  # a copy: the caller's tensor is not the parameter
    assert torch.count_nonzero(tables[0].embedding_table.weight) > 0
    with pytest.raises(ValueError, match=r"expected \(8, 16\)"):
        reset_class_embedding(tiny_dit(num_classes=10), 7, torch.zeros(7, 16))
