"""Faces end to end in miniature: the face layouts indexed (image folder, RecordIO pack + .bin pair
files), the CosFace trainer with verification on every pair set and the group bias summary, and the
face report tables."""
import numpy as np
import pytest
import torch

from rgsyn.config import load_params
from rgsyn.data.images import load_images
from rgsyn.data.layouts import load_faces, read_index
from rgsyn.data.records import FaceDataset
from rgsyn.data.stage import is_face, prepare
from tests.conftest import micro_params

FACE = {"data.layout": "embedded-face", "data.face.num_train_ids": 12, "data.face.num_test_ids": 80,
        "data.face.pairs_per_fold": 8, "data.face.train_images_max": 4}
TRAIN = {"height": 32, "width": 32, "loss": "cosface", "optimizer": "sgd", "lr": 0.05, "cos_scale": 16.0}


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("faces")
    over = {**FACE, **{f"reference.train.{k}": v for k, v in TRAIN.items()},
            **{f"downstream.train.{k}": v for k, v in TRAIN.items()}}
    p = load_params(micro_params(tmp, **over))
    prepare(p.data)
    return p, tmp


def test_face_index_round_trips_with_pair_files(faces):
    p, _ = faces
    ds = read_index(p.data.index)
    assert isinstance(ds, FaceDataset) and is_face(p.data.layout) and not is_face("market1501")
    assert list(ds.sets) == list(p.data.sets) and list(ds.groups) == list(p.data.groups)
    assert len(ds.train_pids) == 12 and all(n >= 2 for n in np.bincount([r.pid for r in ds.train]))
    with pytest.raises(Exception, match="pair file not found"):
        load_faces(p.data.root, "imagefolder", ["nope"], [])


def test_cosface_trainer_reports_every_set_and_the_bias_table(faces):
    from rgsyn.downstream.common import trainer_for
    from rgsyn.downstream.run import train_seed

    p, _ = faces
    m = train_seed(p, "reference", 0, save=True, progress=False)
    for k in (*p.data.sets, "avg_acc", *(f"group_{g}" for g in p.data.groups), "group_mean", "group_std", "to"):
        assert 0 <= m[k] <= 1, k
    assert m["avg_acc"] == pytest.approx(np.mean([m[s] for s in p.data.sets]))
    assert m["to"] == pytest.approx(m["group_mean"] - m["group_std"])
    with pytest.raises(ValueError, match="reference.train.loss"):
        import dataclasses
        trainer_for(read_index(p.data.index), dataclasses.replace(p.reference.train, loss="reid"), "reference.train")


def test_recordio_train_pack_is_read_like_the_image_folder(faces, tmp_path):
    """A pack written from the image folder's files, plus the same .bin files, gives the same training
    records (pid, image) through the index."""
    import shutil

    from tests.test_data_recordio import pack, write_pack

    p, _ = faces
    folder = read_index(p.data.index)
    root = tmp_path / "casia"
    root.mkdir()
    blobs = [open(r.path, "rb").read() for r in folder.train]
    write_pack(root / "train", [(i, pack(r.pid, b)) for i, (r, b) in enumerate(zip(folder.train, blobs))])
    for name in [*p.data.sets, *p.data.groups]:
        shutil.copy(folder.sets.get(name) or folder.groups[name], root / f"{name}.bin")
    ds = load_faces(root, "recordio", p.data.sets, p.data.groups)
    assert [r.pid for r in ds.train] == [r.pid for r in folder.train]
    assert ds.train[0].path.endswith(".rec#0")
    torch.testing.assert_close(load_images([r.path for r in ds.train], 32, 32),
                               load_images([r.path for r in folder.train], 32, 32))
