"""Prefect flows: one per pipeline stage (python -m flows.<stage>) and the pipeline that runs them in dvc.yaml order."""
