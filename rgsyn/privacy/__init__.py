"""The privacy audit (docs/privacy.md): what a user who cannot share their data needs to know.

- Near-copies (copies.py): is a synthetic sample closer to one of my training images than two different
  shots of one person are? Calibrated on the real data itself, in pixels at the generator's
  resolution and in the space of an auditor independent of the reward, with a positive control
  (control.py: training images round-tripped through the decode path and through the generator itself
  must be caught).
- Identity consistency (consistency.py): the gate keeps samples the auditor reads as their own identity
  and that sit in their identity's largest cluster; matching one's own identity is the goal in augment
  mode, not a leak.
- Membership inference (mia.py): can the generator's denoising loss, or the shards alone, tell my
  training images from held-out images of the same people?
- Novel identities (novel.py): new identities for a release, each checked against every real identity
  at a threshold calibrated for a 1:N search.

The auditor (auditor.py) is trained only on the general-domain identities of the prior (a stand-in for
a public matcher), or is the user's own matcher (`audit.encoder`); the reference encoder, which the
reward optimises against, never scores the audit.
"""
