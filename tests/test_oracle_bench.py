"""bench/oracle.py's summary: paired differences to real only, and the captured share of the release and
of each candidate generator's row over the renderer, on per-seed numbers with a known answer."""
from pathlib import Path

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


def test_swap_rows_are_summarised_beside_the_generators():
    bench = load_bench("oracle")
    real = [0.70, 0.72, 0.69]
    res = (_res("real_only", real) + _res("renderer", [r + 0.10 for r in real])
           + _res("swap:0.5", [r - 0.03 for r in real]) + _res("gen:table", [r - 0.06 for r in real]))
    s = bench.summarize(res, "mAP")
    assert list(s["rows"]) == ["real_only", "renderer", "gen:table", "swap:0.5"]
    assert s["captured_share"]["swap:0.5 / renderer"]["ratio"] == pytest.approx(-0.3)


def test_swap_rows_move_the_given_share_of_labels(tmp_path):
    from rgsyn.config import load_params
    from rgsyn.data.stage import prepare
    from tests.conftest import micro_params

    bench = load_bench("oracle")
    params = micro_params(tmp_path)
    p = load_params(params)
    prepare(p.data)
    Path(p.synth.out_dir).mkdir(parents=True)  # the release folder the other rows need
    rows = bench.synthetic_rows(str(params), (0.5,))
    base, swapped = rows["renderer_lowres"], rows["swap:0.5"]
    assert swapped.images is base.images
    moved = [a != b for a, b in zip(base.pids, swapped.pids)]
    assert sum(moved) == round(0.5 * len(moved)) > 0
    assert sorted(set(swapped.pids)) == sorted(set(base.pids))  # to other train identities only


def test_like_rows_fill_exactly_the_given_slots():
    import torch

    from rgsyn.downstream.trainer import Synthetic

    bench = load_bench("oracle")
    base = Synthetic(torch.arange(12).view(12, 1, 1, 1).to(torch.uint8), [1] * 4 + [2] * 4 + [3] * 4)
    got = bench.renderer_like(base, {1: 2, 3: 4})  # identity 2 has no accepted row: none of its renders
    assert got.pids == [1, 1, 3, 3, 3, 3] and got.images.flatten().tolist() == [0, 1, 8, 9, 10, 11]
    with pytest.raises(ValueError, match="identity 2 has 5 accepted rows"):
        bench.renderer_like(base, {2: 5})
