"""gpu/params.yaml holds the paper's sizes and keeps every output under gpu/ folders (that gpu/dvc.yaml
mirrors the root stages is checked in test_dvc_deps.py)."""
import re

import pytest
import yaml

from rgsyn.config import load_params, to_dict
from rgsyn.generator.dit import PRESETS
from tests.conftest import ROOT

GPU = ROOT / "gpu/params.yaml"


@pytest.fixture(scope="module")
def p():
    return load_params(GPU)  # strict: every key of the schema, no other


def test_generator_is_a_local_dit_xl2_with_its_vae(p):
    assert p.coldstart.pretrained == p.prior.out_dir == "models/DiT-XL-2-256"
    xl2 = PRESETS["xl2"]
    assert to_dict(p.prior.model) == {k: xl2[k] for k in ("num_layers", "num_attention_heads", "attention_head_dim",
                                                          "patch_size")}
    assert (p.prior.height, p.prior.width, p.prior.pack) == (256, 256, 1)  # latent 32x32 through the VAE's x8
    assert (p.prior.prediction_type, p.prior.num_classes) == ("epsilon", 1000)
    assert p.coldstart.lr == 1e-5
    assert (p.sampler.steps, p.sampler.guidance) == (50, 4.0)


@pytest.mark.parametrize("section", ["reference", "downstream", "auditor", "backbone"])
def test_recognition_models_are_resnet50_at_256x128(p, section):
    t = getattr(p, section).train
    assert (t.backbone, t.height, t.width, t.p, t.k) == ("resnet50", 256, 128, 16, 4)
    assert (t.optimizer, t.lr, t.loss) == ("adam", 3.5e-4, "reid")
    assert t.pretrained_path == "models/resnet50.safetensors"
    assert t.device == "auto"
    assert p.data.embedded.height == 256 and p.data.embedded.width == 128


def test_compute_and_synthesis_are_the_gpu_ones(p):
    c = p.compute
    assert (c.precision, c.tf32, c.channels_last, c.grad_checkpointing) == ("bf16", True, True, True)
    assert c.compile in ("", "inductor")
    assert (p.synth.task_runner, p.synth.dask_address, p.synth.device) == ("dask", "", "auto")
    assert {p.coldstart.device, p.rl.device, p.prior.device} == {"auto"}


# the params keys that name what a stage writes (inputs such as the download and weights excluded)
OUTPUTS = ["data.root", "data.index", "data.summary", "reference.out_dir", "reference.val_out_dir", "reference.metrics",
           "prior.ckpt_dir",
           "prior.grid", "auditor.out_dir", "backbone.out_dir", "coldstart.out_dir", "coldstart.metrics",
           "coldstart.grid", "rl.bank",
           "rl.out_dir", "rl.metrics", "synth.out_dir", "synth.metrics", "audit.novel_out_dir", "audit.report",
           "downstream.out_dir", "downstream.metrics", "report.markdown", "report.embedding", "ablation.work_dir",
           "ablation.report"]


def value(raw: dict, key: str):
    for part in key.split("."):
        raw = raw[part]
    return raw


def test_every_output_lies_under_a_gpu_folder_apart_from_the_root_pipeline(p):
    gpu, root = to_dict(p), to_dict(load_params(ROOT / "params.yaml"))
    for key in OUTPUTS:
        path = value(gpu, key)
        assert "gpu" in path.split("/")[:-1], f"{key} = {path} is not under a gpu/ folder"
        assert path != value(root, key), key
    assert p.rl.coldstart == p.coldstart.out_dir and p.synth.checkpoint == p.rl.out_dir
    assert p.downstream.mix.synthetic == p.synth.out_dir and p.audit.encoder == p.auditor.out_dir


def test_dvc_outputs_resolve_under_gpu_folders(p):
    raw = to_dict(p)
    stages = yaml.safe_load((ROOT / "gpu/dvc.yaml").read_text())["stages"]
    for name, st in stages.items():
        for out in st.get("outs", []):
            path = re.sub(r"\$\{([^}]+)\}", lambda m: str(value(raw, m.group(1))), next(iter(out)) if
                          isinstance(out, dict) else out)
            if path == p.prior.out_dir:
                continue  # the downloaded DiT-XL/2 stands in the frozen prior's place
            assert "/gpu/" in f"/{path}", f"gpu/dvc.yaml:{name} writes {path} outside the gpu/ folders"
