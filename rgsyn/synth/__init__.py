"""Synthetic identity data: N images per identity from a cold-start or RL generator -> Parquet shards.

Layout of `synth.out_dir` (and of `audit.novel_out_dir`), Hugging Face's dataset repository layout:
`data/shard-00000.parquet`, ... (the schema of rgsyn.synth.schema with the audit's columns, zstd, one
row group) and `data/_manifest.json` (per shard: file, rows, accepted, sha256, seed, who wrote it),
written by the synthesize stage; `README.md`, the dataset card (rgsyn.synth.card), written by the
privacy stage once the audit's figures exist. Two DVC outputs, neither inside the other.

Reproducibility, and where run ids live. Same params + same inputs -> byte-identical shards, so a
killed run resumes (finished shards are skipped) and its output equals an uninterrupted run's. Hence
nothing volatile is written *into* a shard: the `run_id` column and the `rgsyn` file metadata carry
the deterministic *synthesis id*, the short sha256 of
  (hash of the synth params that shape content, i.e. without out_dir / metrics / task_runner /
   dask_address / workers / retries / device, the sampler and audit params and the membership
   hold-out; content hashes of the generator checkpoint chain rl -> coldstart -> pretrained, of the
   reference encoder, the auditor and the memory bank; the reward constants; the git sha).
The MLflow run id and Prefect flow-run id go into the manifest (`written_by` per shard), where they
say which run produced what.

Seeds: shard i's seed = f(synth.seed, i) (numpy SeedSequence), each row's seed = g(shard seed, row);
a sample's noise at every step comes from its own seed, so it does not depend on batching or workers.

Audit columns (rgsyn.privacy): `copy_pixel_sim` / `copy_feature_sim` (nearest training image, pixels
and auditor), `near_copy`, `consistent` (the identity-consistency gate), `identity_leak_sim` (novel
mode: the new identity's nearest real identity; NaN otherwise). `accepted` = consistent, not a
near-copy and R_sem >= synth.sem_floor (and, in novel mode, not a leaked identity). `nn_real_sim` is
the max cosine to any real training image in the reference encoder's space, kept for users; no gate
reads it.

Reward columns: R_sem per sample; R_cov and R_exp are the per-sample credits of rgsyn.rewards, scored
per identity over its whole group (a shard holds all `per_id` samples of each of its identities);
`reward` is eq. 11 standardised over the shard's samples. Novel identities have no real images: NaN.
"""
