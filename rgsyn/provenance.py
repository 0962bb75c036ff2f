"""Where a checkpoint, shard or run came from: the git commit of the code that made it."""
from __future__ import annotations

import subprocess


def git_sha() -> str:
    """HEAD of the repository the process runs in, or "unknown" outside a git checkout."""
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
