"""The `auditor` stage (embedded default; frozen and committed like the prior): the audit's matcher.

An identity encoder trained only on the prior's general-domain identities (rgsyn.generator.prior's
render_general: the same seeds, none of them a target identity), with the re-id trainer. It stands in
for a public matcher: it never saw the target's images or identities and no reward was optimised
against it. Its mAP on the target's test split says how good a matcher it is. A user with a matcher
of their own points `audit.encoder` at it instead (an rgsyn encoder folder: encoder.json +
encoder.safetensors).

The training body is rgsyn.pretrain.train_general_encoder, shared with the `backbone` stage (the
general-domain pretraining of the trainers), which uses another seed: other identities, other weights.
"""
from __future__ import annotations

from rgsyn.config import Params
from rgsyn.pretrain import train_general_encoder


def run_auditor(p: Params, log=None, progress: bool = True) -> dict:
    """Train and save the auditor (params section `auditor`)."""
    return train_general_encoder(p, p.auditor, "auditor", log=log, progress=progress)
