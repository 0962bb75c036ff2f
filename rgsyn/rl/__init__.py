"""RL fine-tuning of the generator (paper §4.2): pure loss pieces (loss.py), group-relative advantages
(advantages.py), the CGPO class sampler (cgpo.py), the policy (policy.py), what both algorithms share
(core.py: reward setup, held-out evaluation, checkpoint), the two algorithms (dpok.py: the paper's
score-function method; draft.py: the pathwise reward gradient) and the loop (loop.py)."""
