"""Synthetic identity data: N images per identity from a cold-start or RL generator -> Parquet shards.

Layout of `synth.out_dir`: `shard-00000.parquet`, ... (SPEC §5 schema, zstd, one row group) and
`_manifest.json` (per shard: file, rows, accepted, sha256, seed, who wrote it).

Reproducibility, and where run ids live. Same params + same inputs -> byte-identical shards, so a
killed run resumes (finished shards are skipped) and its output equals an uninterrupted run's. Hence
nothing volatile is written *into* a shard: the `run_id` column and the `rgsyn` file metadata carry
the deterministic *synthesis id*, the short sha256 of
  (hash of the synth params that shape content, i.e. without out_dir / task_runner / dask_address /
   workers / retries / device; content hashes of the generator checkpoint chain rl -> coldstart ->
   pretrained, of the reference encoder and of the memory bank; the reward constants rl.sigma,
   alpha, eps, tau, weights; the git sha).
The MLflow run id and Prefect flow-run id go into the manifest (`written_by` per shard) and the audit
report (reports/synth_audit.json), where they say which run produced what.

Seeds: shard i's seed = f(synth.seed, i) (numpy SeedSequence), each row's seed = g(shard seed, row);
a sample's starting noise comes from its own seed, so it does not depend on batching or workers.

Privacy audit (audit.py): `nn_real_sim` = max cosine of a sample's reference-encoder feature to any
real train image; threshold = the real impostor similarity at false-match rate synth.fmr. A sample is
`accepted` iff nn_real_sim <= threshold and R_sem >= synth.sem_floor.

Reward columns: R_sem per sample; R_cov and R_exp are the per-sample credits of rgsyn.rewards, scored
per identity over its whole group (a shard holds all `per_id` samples of each of its identities);
`reward` is eq. 11 standardised over the shard's samples.
"""
from rgsyn.synth.reader import SyntheticShards, read_shards
from rgsyn.synth.run import Plan, finalize, make_plan, synthesize, write_shard

__all__ = ["Plan", "SyntheticShards", "finalize", "make_plan", "read_shards", "synthesize", "write_shard"]
