"""Write <folder>/dvc.yaml: the stages of the root dvc.yaml, run from the repository root on
<folder>/params.yaml (the face pipeline: `python scripts/mirror_dvc.py face`). The root dvc.yaml stays
the single source of the stages; tests/test_dvc_deps.py checks that every mirror is up to date.
"""
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def mirror(folder: str) -> str:
    src = (ROOT / "dvc.yaml").read_text()
    out = []
    for line in src[src.index("stages:"):].splitlines():
        m = re.match(r"^(\s+)cmd: python -m (flows\.\w+)$", line)
        if m:
            out += [f"{m.group(1)}wdir: ..", f"{m.group(1)}cmd: python -m {m.group(2)} {folder}/params.yaml"]
        else:
            out.append(line)
    text = "\n".join(out) + "\n"

    def params_block(mt):  # `- section` -> the folder's params file
        indent, keys = mt.group(1), [ln.strip()[2:] for ln in mt.group(2).splitlines() if ln.strip().startswith("- ")]
        return f"{indent}params:\n{indent}  - {folder}/params.yaml:\n" + "".join(f"{indent}      - {k}\n" for k in keys)
    text = re.sub(r"(?m)^(\s+)params:\n((?:\1  - [^\n]+\n)+)", params_block, text)
    return (f"# Written by `python scripts/mirror_dvc.py {folder}` from ../dvc.yaml (edit that one): its stages,\n"
            f"# run from the repository root on {folder}/params.yaml, whose paths all lie apart from the root\n"
            "# pipeline's.\n" + text)


if __name__ == "__main__":
    for folder in sys.argv[1:]:
        (ROOT / folder / "dvc.yaml").write_text(mirror(folder))
