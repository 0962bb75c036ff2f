from prefect import task

from rgsyn.config import DataParams
from rgsyn.data.stage import prepare


@task(name="prepare-data", retries=0)
def prepare_data(cfg: DataParams) -> dict:
    """Render (embedded) or validate (real layout) the dataset and write its Parquet index."""
    return prepare(cfg)
