"""python -m rgsyn.synth [params.yaml]: the synthesize stage in one process, without Prefect or MLflow
(flows/synthesize.py is the orchestrated version). Safe to kill and rerun: finished shards are kept."""
import json
import sys

from rgsyn.config import load_params
from rgsyn.synth.run import synthesize

if __name__ == "__main__":
    out = synthesize(load_params(sys.argv[1] if len(sys.argv) > 1 else "params.yaml"))
    print(json.dumps(out["metrics"], indent=1))
