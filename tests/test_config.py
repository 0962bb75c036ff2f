import pytest

from rgsyn.config import ConfigError, Params, load_params, params_hash
from tests.conftest import ROOT, micro_params


def test_repo_params_load():
    p = load_params(ROOT / "params.yaml")
    assert isinstance(p, Params)
    assert p.reference.train.p == 16 and p.reference.train.k == 4  # paper: 16 x 4
    assert p.reference.train.weight_decay == 5e-4
    assert isinstance(p.reference.train.seeds, tuple)
    with pytest.raises(AttributeError):
        p.data.seed = 3  # frozen


def _edit(tmp_path, old, new):
    path = micro_params(tmp_path)
    path.write_text(path.read_text().replace(old, new, 1))
    return path


def test_unknown_key_names_key_and_file(tmp_path):
    path = _edit(tmp_path, "  zipf_a:", "  zipf_b:")
    with pytest.raises(ConfigError, match=r"params.yaml: unknown key `params.data.embedded.zipf_b`"):
        load_params(path)


def test_missing_key_names_key_and_file(tmp_path):
    path = micro_params(tmp_path)
    path.write_text("\n".join(l for l in path.read_text().splitlines() if not l.strip().startswith("margin:")))
    with pytest.raises(ConfigError, match=r"params.yaml: missing key `params.reference.train.margin`"):
        load_params(path)


def test_wrong_type(tmp_path):
    path = _edit(tmp_path, "epochs: 2", "epochs: two")  # safe_dump sorts sections: downstream comes first
    with pytest.raises(ConfigError, match=r"`params.downstream.train.epochs` must be int"):
        load_params(path)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="nope.yaml: file not found"):
        load_params(tmp_path / "nope.yaml")


def test_overrides_and_hash(tmp_path):
    path = micro_params(tmp_path)
    a = load_params(path)
    b = load_params(path, {"reference.train.lr": 0.5})
    assert b.reference.train.lr == 0.5 and a.reference.train.lr != 0.5
    assert params_hash(a.reference) != params_hash(b.reference)
    assert params_hash(a.data) == params_hash(b.data)
    with pytest.raises(ConfigError, match="names no existing key"):
        load_params(path, {"reference.train.lrr": 1})


@pytest.mark.parametrize("key, bad", [("rl.algorithm", "ppo"), ("sampler.spacing", "cosine")])
def test_choice_keys_refuse_unknown_values_and_name_the_key(tmp_path, key, bad):
    with pytest.raises(ConfigError, match=rf"`params.{key}` = '{bad}' is not one of \["):
        load_params(micro_params(tmp_path, **{key: bad}))


def test_command_line_values_read_off_as_a_string():
    """YAML 1.1 reads off/on/yes/no as booleans; `--set downstream.selection.mode=off` means "off"."""
    from rgsyn.config import parse_overrides

    assert parse_overrides(["downstream.selection.mode=off", "downstream.mix.accepted_only=false", "a=True",
                            "b=0.2", "c=[0, 1]", "d=yes", "e=models/auditor"]) == {
        "downstream.selection.mode": "off", "downstream.mix.accepted_only": False, "a": True, "b": 0.2,
        "c": [0, 1], "d": "yes", "e": "models/auditor"}
    load_params(ROOT / "params.yaml", parse_overrides(["downstream.selection.mode=off"]))  # no longer refused


def test_rl_metrics_may_not_overwrite_the_policys_own_file():
    with pytest.raises(ValueError, match="rl.metrics = '/tmp/rl/rl.json' is the policy's own rl.json"):
        load_params(ROOT / "params.yaml", {"rl.out_dir": "/tmp/rl", "rl.metrics": "/tmp/rl/rl.json"})
    load_params(ROOT / "params.yaml", {"rl.out_dir": "/tmp/rl", "rl.metrics": "/tmp/rl-metrics.json"})


@pytest.mark.parametrize("key, bad, match", [("coldstart.init", "random", "coldstart.init = 'random'"),
                                             ("coldstart.init_per_class", 0, "init_per_class = 0")])
def test_coldstart_init_is_checked(key, bad, match):
    over = {key: bad, **({"coldstart.init": "nearest"} if key == "coldstart.init_per_class" else {})}
    with pytest.raises(ValueError, match=match):
        load_params(ROOT / "params.yaml", over)
