"""One shard's rows from a generator held in memory: sampling, features, rewards, audit, gate.

Why a pipeline: sampling (the DiT, many steps) dominates, while PNG encoding and reference-encoder
features of a batch are short and independent of the next batch. On a GPU a background thread does
them for batch k while the GPU samples batch k+1. On a CPU they run inline: the sampler's OpenMP
threads already occupy every core, and a concurrent torch thread would oversubscribe them.

Determinism: every sample has its own seed (an int64 column of the shard); its starting noise and the
noise of every stochastic step come from a CPU generator seeded with it (rgsyn.generator.sampler), so
a sample does not depend on which batch or worker produced it (up to the float reductions of the
device, fixed for one machine).
"""
from __future__ import annotations

import io
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import torch
from PIL import Image

from rgsyn import rewards as R
from rgsyn.config import RLParams, SamplerParams, SynthParams
from rgsyn.devices import prepare_model
from rgsyn.encoder import IdentityEncoder, extract_features
from rgsyn.generator.dit import DiTBundle, to_images
from rgsyn.generator.sampler import Sampler
from rgsyn.generator.viz import to_uint8
from rgsyn.memory_bank import by_class
from rgsyn.privacy.audit import Auditor
from rgsyn.privacy.copies import max_similarity
from rgsyn.privacy.novel import leak_gate
from rgsyn.synth import schema


def png_bytes(img: np.ndarray) -> bytes:
    """uint8 (H, W, 3) -> PNG bytes (pillow's defaults: deterministic for one pillow/zlib)."""
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


class _Inline:
    """Executor stand-in that runs each task at submit (the CPU path; see the module docstring)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def submit(self, fn, *args) -> Future:
        f = Future()
        f.set_result(fn(*args))
        return f


def candidate_seed(seed: int, j: int) -> int:
    """The seed of best-of-n candidate j of a sample: the sample's own seed for j = 0 (candidates = 1
    draws what it always drew), independent 63-bit streams for the others."""
    if j == 0:
        return int(seed)
    return int(np.random.SeedSequence([int(seed), 1000 + j]).generate_state(1, np.uint64)[0] >> np.uint64(1))


def best_of(feats: torch.Tensor, labels: torch.Tensor, n: int, bank: list[torch.Tensor], rp: RLParams,
            s_pool: float) -> torch.Tensor:
    """Best-of-n: reference features of candidates (M·n, D) with their classes (M·n,), n consecutive rows
    per released sample -> the row (M,) of each sample's candidate with the highest eq. 11 reward, every
    identity's candidates scored as one group and standardised (eq. 10) over all candidates given."""
    parts = R.score_groups(feats, labels, bank, rp.sigma, rp.alpha, rp.eps, rp.tau, s_pool)
    reward = R.combine_rewards(parts["r_sem"], parts["r_cov"], parts["r_exp"], tuple(rp.weights))
    return reward.view(-1, n).argmax(1).cpu() + torch.arange(len(labels) // n) * n


def gate(consistent: np.ndarray, near_copy: np.ndarray, r_sem: np.ndarray, sem_floor: float) -> np.ndarray:
    """Acceptance (M,) bool: identity-consistent, not a near-copy, R_sem at least the floor (a NaN R_sem,
    as novel identities have, is no floor to miss). Compared on the stored float32 values widened to
    float64, so readers of a shard recompute it exactly."""
    r = r_sem.astype(np.float64)
    return consistent & ~near_copy & (np.isnan(r) | (r >= sem_floor))


class Synthesizer:
    """Generator + reference encoder + memory bank + auditor, ready to fill shards.

    class_pids[i] is the dataset pid of generator class i (novel classes follow the real ones and have
    no bank); bank_feats (N, D) / bank_pids (N,) are the member train features (L2-normalised) the
    rewards compare with.
    """

    def __init__(self, bundle: DiTBundle, class_pids: list[int], encoder: IdentityEncoder,
                 bank_feats: torch.Tensor, bank_pids: torch.Tensor, auditor: Auditor, sp: SynthParams,
                 sampler: SamplerParams, rp: RLParams, num_real: int, device: torch.device | str = "cpu",
                 compute=None):
        self.bundle, self.class_pids, self.encoder, self.sp, self.rp = bundle, list(class_pids), encoder, sp, rp
        self.auditor, self.num_real = auditor, num_real
        self.device = torch.device(device)
        bundle.to(self.device).transformer.eval()
        encoder.to(self.device).eval()
        self.precision = compute.precision if compute else "fp32"
        model = prepare_model(bundle.transformer, compute, self.device) if compute else None
        self.sampler = Sampler.from_params(bundle, sampler, self.precision, model)
        self.bank = [b.double() for b in by_class(bank_feats, bank_pids, self.class_pids[:num_real])]
        empty = [p for p, b in zip(self.class_pids, self.bank) if len(b) == 0]
        if empty:
            raise ValueError(f"memory bank has no real image of generator identities {empty[:5]}: the bank and the "
                             "generator come from different datasets (rebuild rl.bank from data.index)")
        self.s_pool = R.pooled_spread(self.bank)
        self.real = bank_feats.float()

    # -- one batch --------------------------------------------------------------------------------
    def sample(self, classes: torch.Tensor, seeds: np.ndarray) -> torch.Tensor:
        """Class indices (B,) + per-sample seeds (B,) -> uint8 images (B, 3, H, W) on the CPU."""
        with torch.inference_mode():
            x0 = self.sampler.sample(classes.to(self.device), seeds=[int(s) for s in seeds]).x0
            return to_uint8(to_images(self.bundle, x0)).cpu()

    def describe(self, images: torch.Tensor) -> tuple[torch.Tensor, list[bytes]]:
        """uint8 (B, 3, H, W) -> (reference features (B, D), PNG bytes); runs off the main thread on a GPU."""
        feats = extract_features(self.encoder, images, device=self.device, precision=self.precision)
        return feats, [png_bytes(a) for a in images.permute(0, 2, 3, 1).numpy()]

    # -- one shard --------------------------------------------------------------------------------
    def rewards(self, feats: torch.Tensor, classes: torch.Tensor) -> dict[str, np.ndarray]:
        """The reward's parts (paper §4.2) per sample, each identity's group scored together; reward
        standardised over the shard's real-identity samples. Novel identities have no real images: their
        rewards are NaN."""
        n = len(classes)
        out = {k: np.full(n, np.nan, np.float32) for k in schema.REWARD_COLUMNS}
        real = classes < self.num_real
        if real.any():
            rp = self.rp
            parts = R.score_groups(feats[real], classes[real], self.bank, rp.sigma, rp.alpha, rp.eps, rp.tau,
                                   self.s_pool)
            parts["reward"] = R.combine_rewards(parts["r_sem"], parts["r_cov"], parts["r_exp"], tuple(rp.weights))
            for k, v in parts.items():
                out[k][real.numpy()] = v.numpy().astype(np.float32)
        return out

    def write(self, classes: list[int], seeds: np.ndarray, path, meta: dict, generator_ckpt: str, run_id: str):
        """Synthesise a shard and write it atomically to `path` (what a shard task and the bench time)."""
        c = self.shard(classes, seeds)
        table = schema.build_table(c, generator_ckpt, run_id, meta)
        return schema.write_atomic(table, path)

    def shard(self, classes: list[int], seeds: np.ndarray) -> dict:
        """All `per_id` samples of each class in `classes` (row-major: class, then k) -> shard columns."""
        per, n = self.sp.per_id, self.sp.candidates
        labels = torch.as_tensor(classes).repeat_interleave(per)  # (M,) class indices
        assert len(seeds) == len(labels)
        drawn = torch.as_tensor(labels).repeat_interleave(n)  # (M·n,) candidates, n per sample
        seeds = np.asarray([candidate_seed(int(s), j) for s in seeds for j in range(n)], np.int64)
        futures, images = [], []
        overlap = self.device.type == "cuda"
        with (ThreadPoolExecutor(1, thread_name_prefix="rgsyn-describe") if overlap else _Inline()) as pool:
            for a in range(0, len(drawn), self.sp.batch):
                imgs = self.sample(drawn[a:a + self.sp.batch], seeds[a:a + self.sp.batch])
                images.append(imgs)
                futures.append(pool.submit(self.describe, imgs))  # on a GPU: overlaps the next batch
            parts = [f.result() for f in futures]
        images = torch.cat(images)
        feats = torch.cat([p[0] for p in parts])  # (M·n, D)
        pngs = [b for p in parts for b in p[1]]
        if n > 1:
            keep = best_of(feats, drawn, n, self.bank, self.rp, self.s_pool)
            images, feats, seeds, pngs = images[keep], feats[keep], seeds[keep.numpy()], [pngs[i] for i in keep.tolist()]
        rw = self.rewards(feats, labels)
        novel = labels >= self.num_real
        extra = None
        if novel.any():  # a novel identity's prototype is the mean of its own samples (auditor space)
            aud = self.auditor.features(images[novel])
            k = len(self.class_pids) - self.num_real
            extra = torch.nn.functional.normalize(torch.zeros(k, aud.shape[1]).index_add_(
                0, labels[novel] - self.num_real, aud), dim=1)
        au = self.auditor.audit(images, labels, extra)
        cols = {k: au[k].numpy() for k in ("copy_pixel_sim", "copy_feature_sim", "near_copy", "consistent")}
        accepted = gate(cols["consistent"], cols["near_copy"], rw["r_sem"], self.sp.sem_floor)
        leak = np.full(len(labels), np.nan, np.float32)
        if extra is not None:  # novel mode: the 1:N gate on the images the other gates accept
            nv = novel.numpy()
            leak[nv], accepted[nv] = leak_gate(aud, labels[novel], accepted[nv], self.auditor.protos,
                                               self.auditor.identity_threshold)
        pids = np.asarray(self.class_pids)[labels.numpy()]
        return {
            "sample_id": [f"{p:04d}_{k:04d}" for p in pids[::per] for k in range(per)],
            "png": pngs,
            "label": pids.astype(np.int32), "seed": np.asarray(seeds, np.int64),
            "features": feats.numpy().astype(np.float32), **rw,
            "nn_real_sim": max_similarity(feats, self.real)[0].numpy().astype(np.float32),
            **cols, "identity_leak_sim": leak, "accepted": accepted,
        }
