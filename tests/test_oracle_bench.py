"""bench/oracle.py's summary: paired differences to real only, and the captured share of the release and
of each candidate generator's row over the renderer, on per-seed numbers with a known answer."""
import pytest

from tests.conftest import load_bench


def _res(row, values):
    return [{"row": row, "seed": s, "mAP": v} for s, v in enumerate(values)]


def test_captured_share_of_the_release_and_each_generator():
    bench = load_bench("oracle")
    real = [0.70, 0.72, 0.69, 0.71, 0.73]
    res = (_res("real_only", real) + _res("renderer", [r + 0.10 + 0.002 * i for i, r in enumerate(real)])
           + _res("release", [r + 0.05 + 0.001 * i for i, r in enumerate(real)])
           + _res("gen:lora", [r + 0.02 for r in real]))
    s = bench.summarize(res, "mAP")
    assert list(s["rows"]) == ["real_only", "release", "renderer", "gen:lora"]
    assert s["rows"]["gen:lora"]["vs_real_only"]["mean"] == pytest.approx(0.02)
    assert s["captured_share"]["renderer"]["ratio"] == pytest.approx(0.052 / 0.104)  # mean gains: 0.05 + 0.002, 0.10 + 0.004
    assert s["captured_share"]["gen:lora / renderer"]["ratio"] == pytest.approx(0.02 / 0.104)
    assert "gen:lora / renderer" in bench.table({"pretrained": s}, "mAP")


def test_sampler_spec_replaces_steps_eta_guidance_only():
    from rgsyn.config import SamplerParams

    bench = load_bench("oracle")
    ship = SamplerParams(steps=5, eta=1.0, guidance=3.0, spacing="trailing")
    assert bench.sampler_for(ship, "") is ship
    assert bench.sampler_for(ship, "20:0:1.5") == SamplerParams(steps=20, eta=0.0, guidance=1.5, spacing="trailing")
    with pytest.raises(SystemExit, match="steps:eta:guidance"):
        bench.sampler_for(ship, "20:1")
