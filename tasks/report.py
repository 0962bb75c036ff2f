from prefect import task
from prefect.cache_policies import NO_CACHE

from rgsyn import report
from rgsyn.config import Params


@task(name="write-report", cache_policy=NO_CACHE)
def write_report(p: Params) -> dict:
    """report.markdown + report.embedding from the metrics files and the shards."""
    return report.pipeline_report(p)
