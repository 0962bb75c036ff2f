"""The generator: diffusers DiT loading and building (dit.py), the sampler with per-step log-probs
(sampler.py), denoising training (train.py), the general-domain prior (prior.py) and cold start
(coldstart.py). Import the module you need; this file imports nothing, so a stage depends only on
the modules it uses."""
