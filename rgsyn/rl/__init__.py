"""DPOK-style RL fine-tuning of the generator (paper §4.2, DPOK eq. 1): pure loss pieces (loss.py),
group-relative advantages (advantages.py), the CGPO class sampler (cgpo.py), the policy (policy.py)
and the loop (loop.py)."""
