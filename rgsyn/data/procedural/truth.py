"""The renderer as the perfect generator: new images of the embedded sets' own train identities.

The embedded sets are rendered, so for every train identity the renderer can draw as many further
captures as asked, from the same identity, the same cameras (re-id) and the same nuisance model as
the dataset's own images, never one of them. That is the ceiling a generator is measured against
(bench/oracle.py) and the reference distribution of the fidelity figures (rgsyn.eval.fidelity).

Streams: a re-id capture is a pure function of (seed, pid, k, TRUTH + salt), a face of (seed, 31,
TRUTH + salt, identity, k); the dataset's own images use other last entries, so no truth image repeats
one of them, and two salts give two independent draws (one to train on, one to measure against).
"""
from __future__ import annotations

import numpy as np
import torch

from rgsyn.config import DataParams

TRUTH = 100  # first stream entry of truth images; the dataset's own images use 1 (re-id) and 1 (faces)


def truth_images(data: DataParams, pids, per_id: int, salt: int = 0) -> tuple[torch.Tensor, list[int]]:
    """`per_id` new renders of each train identity `pids` (the dataset's pids) at the dataset's size
    -> (uint8 (N, 3, H, W), pids (N,)), identity by identity."""
    if per_id < 1:
        raise ValueError(f"truth_images: per_id = {per_id}; ask for at least one image per identity")
    if data.layout == "embedded":
        imgs = _reid(data, pids, per_id, salt)
    elif data.layout == "embedded-face":
        imgs = _faces(data, pids, per_id, salt)
    else:
        raise ValueError(f"params.yaml: data.layout = {data.layout!r}; the renderer's truth exists for the embedded "
                         "sets only (embedded, embedded-face): on your layout, measure against held-out real images")
    x = torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).contiguous()  # (N, 3, H, W)
    return x, [int(p) for p in pids for _ in range(per_id)]


def _reid(data: DataParams, pids, per_id: int, salt: int) -> list[np.ndarray]:
    from rgsyn.data.procedural.render import make_camera, make_identity, render_image

    e, seed = data.embedded, data.seed
    cams = [make_camera(np.random.default_rng([seed, 7, c])) for c in range(e.num_cameras)]
    out = []
    for pid in pids:
        if not 1 <= pid <= e.num_train_ids:
            raise ValueError(f"truth_images: pid {pid} is not a train identity of the embedded set (1..{e.num_train_ids})")
        ident = make_identity(np.random.default_rng([seed, pid]))  # as render_dataset draws it
        for k in range(per_id):
            r = np.random.default_rng([seed, pid, k, TRUTH + salt])
            cam = cams[int(r.integers(e.num_cameras))]  # the target's own cameras, not the prior's
            out.append(render_image(ident, cam, r, e.height, e.width, e.occlusion_prob, e.noise_std))
    return out


def _faces(data: DataParams, pids, per_id: int, salt: int) -> list[np.ndarray]:
    from rgsyn.data.procedural.face_pairs import TRAIN_STREAM, FaceParams, train_identity
    from rgsyn.data.procedural.faces import render_face

    p, seed = FaceParams(**vars(data.face)), data.seed
    out = []
    for pid in pids:
        if not 0 <= pid < p.num_train_ids:
            raise ValueError(f"truth_images: pid {pid} is not a train identity of the embedded face set (0..{p.num_train_ids - 1})")
        ident = train_identity(pid, p, seed)
        for k in range(per_id):
            r = np.random.default_rng([seed, TRAIN_STREAM, TRUTH + salt, pid, k])
            out.append(render_face(ident, r, p.size, occlusion_prob=p.occlusion_prob))
    return out
