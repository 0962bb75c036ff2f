"""The generator: diffusers DiT loading/building, class-embedding reset, sampler with log-probs."""
from rgsyn.generator.dit import DiTBundle, load_dit, reset_class_embedding, save_dit  # noqa: F401
