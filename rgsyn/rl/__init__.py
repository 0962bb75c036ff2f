"""DPOK-style RL fine-tuning of the generator (paper §4.2, DPOK eq. 1): pure loss pieces, the
per-identity advantage tracker, the CGPO class sampler and (later) the loop."""
