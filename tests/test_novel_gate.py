"""The novel release's 1:N gate and the report's leak figures apply one rule to the same images: an
identity whose prototype over its *accepted* images matches a real identity is not released, however
far its prototype over all its samples (rejected ones included) lies, and the report counts it before
the gate and finds none after."""
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from rgsyn.privacy.novel import NOVEL_BASE, identity_sims, leak_gate, leaked_identities
from rgsyn.privacy.run import novel_leaks
from rgsyn.synth import schema
from rgsyn.synth.engine import gate
from rgsyn.synth.reader import SyntheticShards
from tests.test_card_splits import shard_columns

A, B, C = NOVEL_BASE, NOVEL_BASE + 1, NOVEL_BASE + 2
REAL = F.normalize(torch.tensor([[1.0, 0, 0], [0, 1.0, 0]]), dim=1)  # two real identities: the x and y axes
THRESHOLD = 0.9
# A: two accepted images on x (a real person), two rejected ones on z: the mean of all four has cosine
# 0.707 to x, below the threshold, the mean of the accepted ones cosine 1. B: every image on z, far from
# both. C: on y, but no image that the other gates accept.
FEATS = torch.tensor([[1.0, 0, 0], [1, 0, 0], [0, 0, 1], [0, 0, 1],
                      [0, 0, 1], [0, 0, 1], [0, 0, 1], [0, 0, 1],
                      [0, 1, 0], [0, 1, 0], [0, 1, 0], [0, 1, 0]])
LABELS = [A] * 4 + [B] * 4 + [C] * 4
CONSISTENT = np.array([True, True, False, False] + [True] * 4 + [False] * 4)


def test_prototype_over_all_samples_hides_a_leak_of_the_accepted_ones():
    """The mismatch itself: the all-sample prototype stays below the threshold, the released one does not."""
    assert identity_sims(FEATS, LABELS, REAL)[A] == pytest.approx(math.sqrt(0.5))
    assert A not in leaked_identities(FEATS, LABELS, REAL, THRESHOLD)["all"]
    assert leaked_identities(FEATS[:2], LABELS[:2], REAL, THRESHOLD)["all"] == [A]


def test_gate_rejects_an_identity_whose_accepted_images_leak():
    sim, released = leak_gate(FEATS, LABELS, CONSISTENT, REAL, THRESHOLD)
    assert released.tolist() == [False] * 4 + [True] * 4 + [False] * 4  # A whole, B kept, C had nothing
    assert sim[:4].tolist() == [1.0] * 4 and sim[4:8].tolist() == [0.0] * 4 and np.isnan(sim[8:]).all()
    assert ((sim.astype(np.float64) > THRESHOLD) == np.isin(LABELS, [A])).all()  # the stored column says it
    kept = torch.from_numpy(released)
    assert leaked_identities(FEATS[kept], torch.tensor(LABELS)[kept], REAL, THRESHOLD)["all"] == []


def test_report_counts_the_leak_before_the_gate_and_none_in_the_release():
    """novel_leaks reads a shard as the privacy stage does: candidates recomputed from its columns, the
    release from `accepted`; the gate's decision is what synthesis stored."""
    n = len(LABELS)
    cols = shard_columns(0, n, 3)
    _, accepted = leak_gate(FEATS, LABELS, CONSISTENT, REAL, THRESHOLD)
    cols.update(label=np.asarray(LABELS, np.int32), consistent=CONSISTENT, near_copy=np.zeros(n, bool),
                r_sem=np.full(n, np.nan, np.float32), accepted=accepted)
    sh = SyntheticShards(schema.build_table(cols, "ckpt", "run", {}))
    assert (gate(CONSISTENT, cols["near_copy"], cols["r_sem"], 0.5) == CONSISTENT).all()
    out = novel_leaks(sh, FEATS, SimpleNamespace(protos=REAL, identity_threshold=THRESHOLD), sem_floor=0.5)
    pre, rel = out["candidates"], out["released"]
    assert pre["ids"] == [A, B] and pre["all"] == [A]  # before the gate: 1 of the 2 screened leaks
    assert rel["ids"] == [B] and rel["all"] == [] and rel["split_half"] == []  # the release: none
    assert pre["sims"] == {A: 1.0, B: 0.0}
