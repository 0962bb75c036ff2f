"""What Prefect orchestration costs a stage: `python -m flows.data` (the cheapest stage) with a temporary
Prefect server of its own (what a bare `dvc repro` stage does when no PREFECT_API_URL is set) vs against
one server started once (scripts/with_prefect_server.sh, what `make run` does). Sides alternate;
medians of --repeats. The stage's own work (rendering the embedded set) is in both.

python bench/orchestration.py [--repeats 3]
Last line: `ratio: temporary_vs_shared=<x> overhead_s=<seconds a stage saves>`.
"""
import argparse
import os
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np


def run_stage(env: dict) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "flows.data"], env=env, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    base = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    t0 = time.perf_counter()
    server = subprocess.Popen(["prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/api"
    try:
        while True:
            try:
                urllib.request.urlopen(f"{url}/health", timeout=1)
                break
            except OSError:
                time.sleep(0.2)
        start_s = time.perf_counter() - t0
        tmp, shared = [], []
        for _ in range(a.repeats):
            tmp.append(run_stage(base))
            shared.append(run_stage({**base, "PREFECT_API_URL": url}))
    finally:
        server.terminate()
        server.wait()
    t, sh = float(np.median(tmp)), float(np.median(shared))
    print(f"| stage run | seconds (median of {a.repeats}) |\n| --- | --- |")
    print(f"| python -m flows.data, temporary server | {t:.1f} |\n| same, shared server | {sh:.1f} |")
    print(f"| starting the shared server once | {start_s:.1f} |")
    print(f"ratio: temporary_vs_shared={t / sh:.3f} overhead_s={t - sh:.1f}")


if __name__ == "__main__":
    main()
