"""engine.save / engine.load: exact round trips, atomic writes, no pickle, clear errors."""

from __future__ import annotations

import json
import math
import zipfile

import numpy as np
import pytest

import engine
from engine import serialization
from engine.data import DataLoader, TensorDataset
from engine.serialization import load, save


def _tensor_equal(a, b) -> None:
    assert isinstance(b, engine.Tensor)
    assert a.dtype == b.dtype and a.shape == b.shape and a.device == b.device
    assert a.requires_grad == b.requires_grad
    np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_exported_from_engine():
    assert engine.save is save and engine.load is load


def test_round_trip_nested_structure(tmp_path):
    rng = np.random.default_rng(0)
    w = engine.tensor(rng.standard_normal((3, 4)).astype(np.float32), requires_grad=True)
    tensors = {
        "f64": engine.tensor(rng.standard_normal(5)),
        "i64": engine.tensor(np.arange(6, dtype=np.int64).reshape(2, 3)),
        "u8": engine.tensor(np.array([0, 255], np.uint8)),
        "bool": engine.tensor(np.array([True, False])),
        "scalar": engine.tensor(np.float32(2.5)),
        "empty": engine.tensor(np.zeros((0, 3), np.float32)),
    }
    obj = {
        "model": {"layer.weight": w, **tensors},
        "optimizer": {"state": {0: {"step": 3, "exp_avg": np.ones((2, 2))}}, "lr": 1e-3},
        "epoch": 7,
        "ok": True,
        "none": None,
        "name": "ünïcode ✓",
        "big": 2**100,
        "inf": float("inf"),
        "history": [0.5, 0.25, (1, "a", [None])],
        "np_scalar": np.float32(0.1),
        "np_int": np.int64(-3),
    }
    path = tmp_path / "ckpt.npz"
    save(obj, path)
    out = load(path)

    assert list(out) == list(obj)
    _tensor_equal(w, out["model"]["layer.weight"])
    assert out["model"]["layer.weight"].is_leaf
    for name, t in tensors.items():
        _tensor_equal(t, out["model"][name])
    state = out["optimizer"]["state"]
    assert list(state) == [0] and state[0]["step"] == 3
    assert isinstance(state[0]["exp_avg"], np.ndarray)
    np.testing.assert_array_equal(state[0]["exp_avg"], np.ones((2, 2)))
    assert out["optimizer"]["lr"] == 1e-3
    assert out["epoch"] == 7 and out["ok"] is True and out["none"] is None
    assert out["name"] == obj["name"] and out["big"] == 2**100 and out["inf"] == math.inf
    assert out["history"] == [0.5, 0.25, (1, "a", [None])]
    assert isinstance(out["history"][2], tuple)
    assert out["np_scalar"] == np.float32(0.1) and out["np_scalar"].dtype == np.float32
    assert out["np_int"] == -3 and out["np_int"].dtype == np.int64


def test_nan_and_top_level_values(tmp_path):
    save([float("nan"), -0.0], tmp_path / "a")
    nan, zero = load(tmp_path / "a")
    assert math.isnan(nan) and math.copysign(1, zero) == -1
    t = engine.tensor(np.array([1.5, np.nan], np.float32))
    save(t, tmp_path / "b")
    np.testing.assert_array_equal(load(tmp_path / "b").numpy(), t.numpy())


def test_writes_exactly_the_given_path_as_a_plain_npz(tmp_path):
    path = tmp_path / "model.ckpt"
    save({"w": engine.tensor(np.arange(3.0))}, path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.ckpt"]
    with zipfile.ZipFile(path) as z:
        assert sorted(z.namelist()) == ["__structure__.npy", "a0.npy"]
    with np.load(path, allow_pickle=False) as npz:
        meta = json.loads(npz["__structure__"].tobytes())
    assert meta["format"] == "tensortape-checkpoint" and meta["version"] == 1
    assert meta["root"]["items"][0][1] == {
        "t": "tensor",
        "array": "a0",
        "device": "cpu",
        "requires_grad": False,
    }


def test_unknown_type_names_the_key_path_and_writes_nothing(tmp_path):
    path = tmp_path / "x.npz"
    with pytest.raises(TypeError, match=r"builtins.set at obj\['model'\]\['layers'\]\[1\]"):
        save({"model": {"layers": [1, {2}]}}, path)
    with pytest.raises(TypeError, match=r"dict key \(1, 2\) at obj\['a'\]"):
        save({"a": {(1, 2): 3}}, path)
    with pytest.raises(TypeError, match=r"object-dtype array at obj\[0\]"):
        save([np.array([{}, None])], path)
    assert list(tmp_path.iterdir()) == []


def test_crash_mid_save_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.npz"
    save({"epoch": 1, "w": engine.tensor(np.ones(4))}, path)
    before = path.read_bytes()

    def torn_write(f, arrays):
        f.write(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt("power cut")

    monkeypatch.setattr(serialization, "_write_npz", torn_write)
    with pytest.raises(KeyboardInterrupt):
        save({"epoch": 2, "w": engine.tensor(np.zeros(4))}, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.npz"]
    assert load(path)["epoch"] == 1


def test_overwrite_replaces_the_file(tmp_path):
    path = tmp_path / "ckpt.npz"
    save({"epoch": 1}, path)
    save({"epoch": 2}, path)
    assert load(path) == {"epoch": 2}


def test_load_refuses_pickled_objects(tmp_path):
    path = tmp_path / "evil.npz"
    meta = {
        "format": "tensortape-checkpoint",
        "version": 1,
        "root": {"t": "ndarray", "array": "a0", "device": "cpu"},
    }
    structure = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    with open(path, "wb") as f:
        np.savez(f, a0=np.array([print], dtype=object), __structure__=structure)
    with pytest.raises(ValueError, match="allow_pickle"):
        load(path)


def test_load_rejects_foreign_files(tmp_path):
    np.savez(tmp_path / "plain.npz", x=np.ones(2))
    with pytest.raises(ValueError, match="not a tensortape checkpoint"):
        load(tmp_path / "plain.npz")
    meta = np.frombuffer(json.dumps({"format": "other", "version": 1}).encode(), np.uint8)
    np.savez(tmp_path / "other.npz", __structure__=meta)
    with pytest.raises(ValueError, match="unsupported checkpoint format 'other'"):
        load(tmp_path / "other.npz")


def test_load_from_a_file_object_names_it_in_errors(tmp_path):
    """What --resume on ranks decodes: the bytes rank 0 read, in an io.BytesIO named by path."""
    import io

    save({"w": engine.tensor([1.0, 2.0]), "epoch": 3}, tmp_path / "c.npz")
    f = io.BytesIO((tmp_path / "c.npz").read_bytes())
    got = load(f)
    np.testing.assert_array_equal(got["w"].numpy(), [1.0, 2.0])
    assert got["epoch"] == 3
    bad = io.BytesIO(b"not a checkpoint")
    bad.name = "runs/x/checkpoint.npz"
    with pytest.raises(ValueError, match="^runs/x/checkpoint.npz is not a tensortape checkpoint"):
        load(bad)
    with pytest.raises(ValueError, match="^<checkpoint bytes> is not a tensortape checkpoint"):
        load(io.BytesIO(b""))


def _retarget(path, device: str) -> None:
    """Rewrite a checkpoint as if its tensors had been saved on `device`."""
    with np.load(path) as npz:
        arrays = dict(npz)
    text = (
        arrays["__structure__"]
        .tobytes()
        .decode()
        .replace('"device": "cpu"', f'"device": "{device}"')
    )
    arrays["__structure__"] = np.frombuffer(text.encode(), np.uint8)
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def test_cuda_checkpoint_falls_back_to_cpu_with_a_warning(tmp_path, monkeypatch):
    path = tmp_path / "gpu.npz"
    save({"w": engine.tensor(np.arange(3.0)), "m": np.ones(2)}, path)
    _retarget(path, "cuda:0")
    monkeypatch.setattr(serialization.cuda, "is_available", lambda: False)
    with pytest.warns(UserWarning, match="CUDA is not available"):
        out = load(path)
    assert out["w"].device == "cpu" and isinstance(out["m"], np.ndarray)
    np.testing.assert_array_equal(out["w"].numpy(), [0, 1, 2])


def test_map_location_cpu_is_silent(tmp_path, recwarn):
    path = tmp_path / "gpu.npz"
    save({"w": engine.tensor(np.arange(3.0), requires_grad=True)}, path)
    _retarget(path, "cuda:0")
    out = load(path, map_location="cpu")
    assert out["w"].device == "cpu" and out["w"].requires_grad
    assert not [w for w in recwarn if "CUDA" in str(w.message)]


def test_checkpoint_with_rng_and_loader_state_resumes_exactly(tmp_path):
    x = engine.tensor(np.arange(40, dtype=np.float32).reshape(20, 2))
    loader = DataLoader(
        TensorDataset(x, engine.tensor(np.arange(20))), batch_size=3, shuffle=True, seed=5
    )
    for _ in loader:
        pass
    engine.manual_seed(11)
    engine.random.generator(engine.device("cpu")).random(3)
    save({"loader": loader.state_dict(), "rng": engine.random.get_rng_state()}, tmp_path / "c.npz")
    expected_order = np.concatenate([b[1].numpy() for b in loader])
    expected_draw = engine.random.generator(engine.device("cpu")).random(4)

    ckpt = load(tmp_path / "c.npz")
    fresh = DataLoader(
        TensorDataset(x, engine.tensor(np.arange(20))), batch_size=3, shuffle=True, seed=0
    )
    fresh.load_state_dict(ckpt["loader"])
    engine.random.set_rng_state(ckpt["rng"])
    np.testing.assert_array_equal(np.concatenate([b[1].numpy() for b in fresh]), expected_order)
    np.testing.assert_array_equal(
        engine.random.generator(engine.device("cpu")).random(4), expected_draw
    )


def test_round_trip_on_device(tmp_path, device):
    xp = engine.device(device).xp
    w = engine.tensor(
        np.arange(6, dtype=np.float32).reshape(2, 3), device=device, requires_grad=True
    )
    raw = xp.asarray(np.array([1.5, -2.0]))
    save({"w": w, "m": raw}, tmp_path / "d.npz")
    out = load(tmp_path / "d.npz")
    _tensor_equal(w, out["w"])
    assert isinstance(out["m"], type(raw))
    np.testing.assert_array_equal(engine.tensor(out["m"]).numpy(), [1.5, -2.0])
    on_cpu = load(tmp_path / "d.npz", map_location="cpu")
    assert on_cpu["w"].device == "cpu" and isinstance(on_cpu["m"], np.ndarray)
    np.testing.assert_array_equal(on_cpu["w"].numpy(), w.numpy())


def test_load_names_the_file_and_never_suggests_pickle(tmp_path):
    engine.save({"a": engine.ones(300)}, tmp_path / "good.npz")
    whole = (tmp_path / "good.npz").read_bytes()
    cases = {
        "empty.npz": (b"", "the file is empty"),
        "truncated.npz": (whole[: len(whole) // 2], "not an .npz archive, or a truncated one"),
        "random.npz": (bytes(range(256)) * 2, "not an .npz archive, or a truncated one"),
    }
    for name, (data, message) in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ValueError) as e:
            engine.load(tmp_path / name)
        assert str(tmp_path / name) in str(e.value) and message in str(e.value)
        assert "pickle" not in str(e.value)
    with pytest.raises(FileNotFoundError):
        engine.load(tmp_path / "missing.npz")
