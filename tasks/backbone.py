from prefect import task
from prefect.cache_policies import NO_CACHE

from rgsyn.config import Params
from rgsyn.pretrain import train_general_encoder


@task(name="train-backbone", tags=["train", "gpu"], cache_policy=NO_CACHE)
def train_backbone(p: Params, log=None) -> dict:
    """The trainers' general-domain pretraining, on other general-domain identities than the auditor's."""
    return train_general_encoder(p, p.backbone, "backbone", log=log)
