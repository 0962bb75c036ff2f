"""One shard's rows from a generator held in memory: sampling, features, audit, rewards.

Why a pipeline: sampling (the DiT, many steps) dominates, while PNG encoding, reference-encoder
features and the nearest-real search of a batch are short and independent of the next batch. On a
GPU a background thread does them for batch k while the GPU samples batch k+1. On a CPU they run
inline: the sampler's OpenMP threads already occupy every core, and a concurrent torch thread
oversubscribes them (measured with bench/synthesis.py on 2 cores: ratio 0.83 with the background
thread, 1.02 inline).

Determinism: every sample has its own seed (an int64 column of the shard); its starting noise x_T is
drawn from a CPU generator seeded with it and DDIM runs with eta 0, so a sample does not depend on
which batch or worker produced it (up to the float reductions of the device, fixed for one machine).
"""
from __future__ import annotations

import io
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import torch
from PIL import Image

from rgsyn import rewards as R
from rgsyn.config import RLParams, SynthParams
from rgsyn.encoder import IdentityEncoder, extract_features
from rgsyn.generator.dit import DiTBundle, to_images
from rgsyn.generator.sampler import Sampler
from rgsyn.generator.viz import to_uint8
from rgsyn.memory_bank import by_class
from rgsyn.synth import schema
from rgsyn.synth.audit import nearest_real


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


def gate(nn_sim: np.ndarray, r_sem: np.ndarray, threshold: float, sem_floor: float) -> np.ndarray:
    """Acceptance (M,) bool: not above the leakage threshold and R_sem at least the floor.
    Compared on the stored float32 values widened to float64, so readers of a shard recompute it exactly."""
    return (nn_sim.astype(np.float64) <= threshold) & (r_sem.astype(np.float64) >= sem_floor)


class Synthesizer:
    """Generator + reference encoder + memory bank, ready to fill shards.

    class_pids[i] is the dataset pid of generator class i; bank_feats (N, D) / bank_pids (N,) are the
    real train features (L2-normalised) the rewards and the audit compare with.
    """

    def __init__(self, bundle: DiTBundle, class_pids: list[int], encoder: IdentityEncoder,
                 bank_feats: torch.Tensor, bank_pids: torch.Tensor, sp: SynthParams, rp: RLParams,
                 device: torch.device | str = "cpu"):
        self.bundle, self.class_pids, self.encoder, self.sp, self.rp = bundle, list(class_pids), encoder, sp, rp
        self.device = torch.device(device)
        bundle.transformer.to(self.device).eval()
        encoder.to(self.device).eval()
        self.sampler = Sampler(bundle, sp.sample_steps, eta=0.0, guidance=sp.guidance)
        self.bank = [b.double() for b in by_class(bank_feats, bank_pids, self.class_pids)]  # per class (n_y, D)
        empty = [p for p, b in zip(self.class_pids, self.bank) if len(b) == 0]
        if empty:
            raise ValueError(f"memory bank has no real image of generator identities {empty[:5]}: the bank and the "
                             "generator come from different datasets (rebuild rl.bank from data.index)")
        spreads = [float(R.spread(b)) for b in self.bank if len(b) >= 2]
        self.s_pool = float(np.mean(spreads)) if spreads else 0.0  # S_r for one-image identities (as in RL)
        self.real = bank_feats.float()

    # -- one batch --------------------------------------------------------------------------------
    def sample(self, classes: torch.Tensor, seeds: np.ndarray) -> torch.Tensor:
        """Class indices (B,) + per-sample seeds (B,) -> uint8 images (B, 3, H, W) on the CPU."""
        shape = self.bundle.sample_shape
        x_T = torch.stack([torch.randn(shape, generator=torch.Generator().manual_seed(int(s))) for s in seeds])
        with torch.inference_mode():
            x0 = self.sampler.sample(classes.to(self.device), x_T=x_T.to(self.device)).x0
            return to_uint8(to_images(self.bundle, x0)).cpu()

    def describe(self, images: torch.Tensor) -> tuple[torch.Tensor, list[bytes], torch.Tensor]:
        """uint8 (B, 3, H, W) -> (features (B, D), PNG bytes, nn_real_sim (B,)); runs off the main thread."""
        feats = extract_features(self.encoder, images, device=self.device)
        pngs = [png_bytes(a) for a in images.permute(0, 2, 3, 1).numpy()]
        return feats, pngs, nearest_real(feats, self.real)[0]

    # -- one shard --------------------------------------------------------------------------------
    def rewards(self, feats: torch.Tensor, classes: torch.Tensor) -> dict[str, np.ndarray]:
        """SPEC §6 parts per sample, each identity's group scored together; reward standardised over the shard."""
        f = feats.double()
        out = {k: torch.zeros(len(classes), dtype=torch.float64) for k in ("r_sem", "r_cov", "r_exp")}
        rp = self.rp
        for c in classes.unique().tolist():
            m = classes == c
            bank = self.bank[c]
            s_ref = None if len(bank) >= 2 else self.s_pool
            out["r_sem"][m] = R.semantic_reward(f[m], bank)
            out["r_cov"][m] = R.coverage_reward_per_sample(f[m], bank, rp.sigma, rp.alpha)
            out["r_exp"][m] = R.expansion_reward_per_sample(f[m], bank, rp.eps, rp.tau, s_ref)
        out["reward"] = R.combine_rewards(out["r_sem"], out["r_cov"], out["r_exp"], tuple(rp.weights))
        return {k: v.numpy().astype(np.float32) for k, v in out.items()}

    def write(self, classes: list[int], seeds: np.ndarray, threshold: float, path, meta: dict,
              generator_ckpt: str, run_id: str):
        """Synthesise a shard and write it atomically to `path` (what a shard task and the bench time)."""
        c = self.shard(classes, seeds, threshold)
        table = schema.build_table(c["sample_ids"], c["pngs"], c["labels"], c["seeds"], c["features"], c["parts"],
                                   c["nn_real_sim"], c["accepted"], generator_ckpt, run_id, meta)
        return schema.write_atomic(table, path)

    def shard(self, classes: list[int], seeds: np.ndarray, threshold: float) -> dict:
        """All `per_id` samples of each class in `classes` (row-major: class, then k) -> shard columns."""
        per = self.sp.per_id
        labels = torch.as_tensor(classes).repeat_interleave(per)  # (M,) class indices
        assert len(seeds) == len(labels)
        futures = []
        overlap = self.device.type == "cuda"
        with (ThreadPoolExecutor(1, thread_name_prefix="rgsyn-describe") if overlap else _Inline()) as pool:
            for a in range(0, len(labels), self.sp.batch):
                imgs = self.sample(labels[a:a + self.sp.batch], seeds[a:a + self.sp.batch])
                futures.append(pool.submit(self.describe, imgs))  # on a GPU: overlaps the next batch
            parts = [f.result() for f in futures]
        feats = torch.cat([p[0] for p in parts])  # (M, D)
        nn_sim = torch.cat([p[2] for p in parts]).numpy().astype(np.float32)
        rw = self.rewards(feats, labels)
        accepted = gate(nn_sim, rw["r_sem"], threshold, self.sp.sem_floor)
        pids = np.asarray(self.class_pids)[labels.numpy()]
        return {
            "sample_ids": [f"{p:04d}_{k:04d}" for p in pids[::per] for k in range(per)],
            "pngs": [b for p in parts for b in p[1]],
            "labels": pids.astype(np.int32), "seeds": np.asarray(seeds, np.int64),
            "features": feats.numpy().astype(np.float32), "parts": rw, "nn_real_sim": nn_sim, "accepted": accepted,
        }
