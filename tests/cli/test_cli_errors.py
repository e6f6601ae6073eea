"""The command line as users meet it: every user error is one line on stderr and a non-zero exit
(2 for a bad option, 1 for a bad file, dataset or checkpoint), with no traceback and no file
changed or left behind; the README's option lines and every verb's --help tell the truth."""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy
import pytest
from helpers import cli_error

import engine
from tensortape.cli import TASKS, HelpFormatter, build_parser, main

ROOT = Path(__file__).resolve().parents[2]
FAST = ("--device", "cpu", "--no-progress", "--epochs", "1")

# (argv, exit status, a piece of the one error line). "{dir}" is a scratch folder holding the
# files named below (made by the `files` fixture); the run's --out is "{dir}/run".
BAD_OPTION_VALUES = [
    (["train", "classifier", "--epochs", "0"], "argument --epochs: must be a positive integer"),
    (["train", "gan", "--epochs", "-1"], "argument --epochs: must be a positive integer"),
    (["train", "stylegan", "--epochs", "1.5"], "argument --epochs: must be a positive integer"),
    (["train", "classifier", "--batch-size", "0"], "argument --batch-size: must be a positive"),
    (["train", "pix2pix", "--batch-size", "0"], "argument --batch-size: must be a positive"),
    (["train", "cyclegan", "--batch-size", "0"], "argument --batch-size: must be a positive"),
    (["train", "classifier", "--lr", "0"], "argument --lr: must be a finite number > 0"),
    (["train", "classifier", "--lr", "-1"], "argument --lr: must be a finite number > 0"),
    (["train", "classifier", "--lr", "inf"], "argument --lr: must be a finite number > 0"),
    (["train", "gan", "--lr", "nan"], "argument --lr: must be a finite number > 0"),
    (["train", "vae", "--lr", "fast"], "argument --lr: must be a finite number > 0, got 'fast'"),
    (["train", "classifier", "--l1", "nan"], "argument --l1: must be a finite number >= 0"),
    (["train", "classifier", "--l2=-1e-4"], "argument --l2: must be a finite number >= 0"),
    (["train", "classifier", "--dropout", "1"], "argument --dropout: must be a probability"),
    (["train", "classifier", "--seed", "-1"], "argument --seed: must be an integer >= 0"),
    (["train", "vae", "--latent-dim", "0"], "argument --latent-dim: must be a positive integer"),
    (["train", "gan", "--latent-dim", "0"], "argument --latent-dim: must be a positive integer"),
    (["train", "stylegan", "--latent-dim", "0"], "argument --latent-dim: must be a positive"),
    (["train", "ae", "--hidden-dim", "0"], "argument --hidden-dim: must be a positive integer"),
    (["train", "ae", "--width", "0"], "argument --width: must be a positive integer"),  # old name
    (["train", "gan", "--hidden-dim", "0"], "argument --hidden-dim: must be a positive integer"),
    (["train", "cyclegan", "--disc-hidden-dim", "-1"], "argument --disc-hidden-dim: must be a "),
    (["train", "stylegan", "--mixing-prob", "2"], "argument --mixing-prob: must be a probab"),
    (["train", "cyclegan", "--lambda-cycle", "nan"], "argument --lambda-cycle: must be a finite"),
    (["train", "vae", "--iw-samples", "-1"], "argument --iw-samples: must be an integer >= 0"),
    (["train", "classifier", "--optimizer", "adamw"], "argument --optimizer: invalid choice"),
    (["train", "gan", "--dataset", "cifar"], "argument --dataset: invalid choice"),
    (["train", "gan", "--gan-loss", "l2"], "argument --gan-loss: invalid choice"),
    (["train", "gan", "--optimizer", "sgd"], "unrecognized arguments: --optimizer sgd"),
    (["sample", "x.npz", "--n", "0"], "argument --n: must be a positive integer"),
    (["sample", "x.npz", "--truncation-psi", "nan"], "argument --truncation-psi: must be a fin"),
    (["mix", "x.npz", "--n", "-2"], "argument --n: must be a positive integer"),
    (["bench", "--device", "tpu"], "argument --device: invalid choice"),
    (["bench", "--repeats", "0"], "argument --repeats: must be a positive integer"),
]

BAD_RUNS = [  # (argv, exit status, message piece)
    (["train", "gan", "--batch-size", "2000"], 2, "--batch-size 2000 is larger than the 1438"),
    (["train", "cgan", "--batch-size", "1439"], 2, "--batch-size 1439 is larger than the 1438"),
    (["train", "stylegan", "--batch-size", "5000"], 2, "no training step would run"),
    (["train", "classifier", "--resume"], 1, "--resume: no checkpoint at {dir}/run"),
    (["train", "classifier", "--resume", "--overwrite"], 2, "--overwrite replaces it"),
    (["train", "classifier", "--out", "{dir}/gan.npz"], 2, "is a file, not a run directory"),
    (["train", "classifier", "--out", "{dir}/full"], 2, "--out {dir}/full already holds files"),
    (["sample", "{dir}/missing.npz"], 1, "{dir}/missing.npz: no such checkpoint file"),
    (["sample", "{dir}"], 1, "is a directory, not a checkpoint file"),
    (["sample", "{dir}/empty.npz"], 1, "not a tensortape checkpoint (the file is empty)"),
    (["sample", "{dir}/truncated.npz"], 1, "not an .npz archive, or a truncated one"),
    (["sample", "{dir}/random.npz"], 1, "not an .npz archive, or a truncated one"),
    (["sample", "{dir}/array.npy"], 1, "not a tensortape checkpoint (a single .npy array)"),
    (["sample", "{dir}/plain.npz"], 1, "not a tensortape checkpoint (no __structure__ entry)"),
    (["sample", "{dir}/notask.npz"], 1, "not a checkpoint of `tensortape train`"),
    (["sample", "{dir}/classifier.npz"], 1, "holds a classifier, which draws no samples"),
    (["mix", "{dir}/gan.npz"], 1, "mix needs a StyleGAN checkpoint"),
    (["sample", "{dir}/gan.npz", "--truncation-psi", "0.5"], 2, "--truncation-psi is for Sty"),
    (["sample", "{dir}/gan.npz", "--data-dir", "d"], 2, "--data-dir is for pix2pix/cyclegan"),
    (["sample", "{dir}/gan.npz", "--out", "{dir}/taken.png"], 2, "exists; pass --overwrite"),
    (["sample", "{dir}/gan.npz", "--out", "{dir}"], 2, "is a directory; give a file name"),
    (["bench", "--only", "nope"], 2, "--only: unknown workload(s) ['nope']"),
]


@pytest.fixture
def files(tmp_path, monkeypatch):
    """A scratch folder of bad and foreign files; the working directory is an empty folder."""
    d = tmp_path / "files"
    d.mkdir()
    engine.save({"a": engine.ones(300)}, d / "good.npz")
    whole = (d / "good.npz").read_bytes()
    (d / "truncated.npz").write_bytes(whole[: len(whole) // 2])
    (d / "random.npz").write_bytes(numpy.random.default_rng(0).bytes(400))
    (d / "empty.npz").write_bytes(b"")
    numpy.save(d / "array.npy", numpy.ones(3))
    numpy.savez(d / "plain.npz", x=numpy.ones(3))
    engine.save({"epoch": 1}, d / "notask.npz")
    engine.save({"task": "classifier"}, d / "classifier.npz")
    engine.save({"task": "gan"}, d / "gan.npz")
    (d / "taken.png").write_bytes(b"mine")
    (d / "full").mkdir()
    (d / "full" / "metrics.json").write_text("{}")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    return d


def _snapshot(*folders: Path) -> dict:
    return {
        p: (p.stat().st_size, p.stat().st_mtime_ns)
        for folder in folders
        for p in sorted(folder.rglob("*"))
    }


def _fill(argv, d: Path) -> list[str]:
    return [a.replace("{dir}", str(d)) for a in argv]


@pytest.mark.parametrize(
    "argv, expected", BAD_OPTION_VALUES, ids=[" ".join(a) for a, _ in BAD_OPTION_VALUES]
)
def test_bad_option_values_are_one_usage_line(argv, expected, files, capsys):
    before = _snapshot(files, Path.cwd())
    code, line = cli_error(argv, capsys)
    assert code == 2
    assert expected in line
    assert _snapshot(files, Path.cwd()) == before  # nothing written, not even an empty folder


@pytest.mark.parametrize(
    "argv, code, expected", BAD_RUNS, ids=[" ".join(a).replace("{dir}/", "") for a, *_ in BAD_RUNS]
)
def test_user_errors_are_one_line_and_leave_no_files(argv, code, expected, files, capsys):
    argv = _fill(argv, files)
    if argv[0] == "train":
        argv = argv + list(FAST) + ([] if "--out" in argv else ["--out", str(files / "run")])
    before = _snapshot(files, Path.cwd())
    got, line = cli_error(argv, capsys)
    assert (got, "allow_pickle" in line) == (code, False), line
    assert expected.replace("{dir}", str(files)) in line
    assert _snapshot(files, Path.cwd()) == before
    assert not (files / "run").exists()


def _train(out, *extra):
    main(["train", "classifier", "--model", "mlp", *FAST, "--out", str(out), *extra])


def test_resume_takes_the_runs_settings_and_refuses_different_ones(tmp_path, capsys, monkeypatch):
    from tensortape.tasks import classifier

    out = tmp_path / "run"
    evaluate = classifier.evaluate

    def interrupt(*args):
        raise KeyboardInterrupt

    def killed_in_epoch_2(*args):  # a 3-epoch run whose checkpoint holds epoch 1
        monkeypatch.setattr(classifier, "evaluate", interrupt)
        return evaluate(*args)

    monkeypatch.setattr(classifier, "evaluate", killed_in_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        _train(out, "--optimizer", "sgd", "--lr", "0.05", "--l2", "1e-4", "--epochs", "3")
    monkeypatch.setattr(classifier, "evaluate", evaluate)
    metrics = (out / "metrics.json").read_text()
    for extra, piece in [
        (("--lr", "0.01"), "--lr 0.01 (checkpoint: 0.05)"),
        (("--optimizer", "adam"), "--optimizer adam (checkpoint: sgd)"),
        (("--model", "cnn"), "--model cnn (checkpoint: mlp)"),
    ]:
        argv = ["train", "classifier", "--device", "cpu", "--no-progress", "--out", str(out)]
        code, line = cli_error(argv + ["--resume", "--epochs", "2", *extra], capsys)
        assert code == 2 and piece in line and "keeps the settings of" in line
    code, line = cli_error(["train", "classifier", "--device", "cpu", "--out", str(out)], capsys)
    assert code == 2 and "pass --resume to continue that run or --overwrite" in line
    assert (out / "metrics.json").read_text() == metrics  # untouched by the refusals
    # Options left out come from the checkpoint (sgd at 0.05 on the mlp, not adam on the cnn);
    # the same value given again is fine; --epochs sets the total (here shorter than planned).
    main(["train", "classifier", "--device", "cpu", "--no-progress", "--out", str(out), "--resume",
          "--epochs", "2", "--lr", "0.05"])  # fmt: skip
    assert "resuming" in capsys.readouterr().err
    state = engine.load(out / "checkpoint.npz")
    assert state["epoch"] == 2 and state["args"]["optimizer"] == "sgd"
    assert state["args"]["model"] == "mlp" and state["args"]["lr"] == 0.05
    code, line = cli_error(["train", "classifier", "--device", "cpu", "--out", str(out),
                            "--resume", "--epochs", "1"], capsys)  # fmt: skip
    assert code == 2 and "--epochs 1 is less than the 2 epochs" in line
    # --overwrite starts afresh.
    _train(out, "--overwrite")
    assert engine.load(out / "checkpoint.npz")["args"]["optimizer"] == "adam"


def test_a_non_finite_loss_stops_the_run_with_one_line(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", "classifier", "--model", "mlp", "--device", "cpu", "--no-progress",
            "--out", str(out), "--epochs", "2", "--lr", "1e30", "--optimizer", "sgd"]  # fmt: skip
    with warnings.catch_warnings(record=True) as caught:  # what a terminal would print
        warnings.simplefilter("always")
        code, line = cli_error(argv, capsys)
    assert code == 1
    assert re.search(r"loss 'train_loss' is (nan|inf) at epoch 1, step \d+ \(global step", line)
    assert not caught, [str(w.message) for w in caught]  # no NumPy overflow lines before it
    assert not out.exists()  # the first epoch never completed: nothing to keep


def test_stale_temp_files_are_cleaned_at_the_next_save(tmp_path):
    out = tmp_path / "run"
    main(["train", "ae", *FAST, "--out", str(out)])  # constant lr: a finished run extends
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    stale = out / f".checkpoint.npz.{dead}.abc123.tmp"  # what a kill -9 mid-save leaves
    stale.write_bytes(b"torn")
    old = out / ".metrics.json.xyz.tmp"  # the older form without a pid, an hour old
    old.write_text("torn")
    os.utime(old, (0, 0))
    main(["train", "ae", "--device", "cpu", "--no-progress", "--out", str(out), "--resume",
          "--epochs", "2"])  # fmt: skip
    assert not stale.exists() and not old.exists()
    assert not list(out.glob(".*.tmp"))


def test_sample_creates_the_out_folder(tmp_path, capsys):
    out = tmp_path / "run"
    main(["train", "vae", *FAST, "--out", str(out), "--iw-samples", "0"])
    grid = tmp_path / "new" / "deeper" / "grid.png"
    main(["sample", str(out / "checkpoint.npz"), "--n", "4", "--out", str(grid)])
    assert grid.stat().st_size > 0
    code, line = cli_error(["sample", str(out / "checkpoint.npz"), "--out", str(grid)], capsys)
    assert code == 2 and "exists; pass --overwrite" in line
    main(["sample", str(out / "checkpoint.npz"), "--n", "4", "--out", str(grid), "--overwrite"])


def test_the_real_entry_point_prints_one_line_and_debug_a_traceback(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "tensortape.cli", "sample", str(tmp_path / "none.npz")]
    plain = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path)
    assert plain.returncode == 1
    assert plain.stderr.strip().splitlines() == [
        f"tensortape sample: error: {tmp_path / 'none.npz'}: no such checkpoint file"
    ]
    debug = subprocess.run(cmd + ["--debug"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert debug.returncode == 1 and "Traceback" in debug.stderr


# -------------------------------------------------------------------------------------------
# The README and --help


def _leaf_parsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    verbs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    leaves = {name: p for name, p in verbs.choices.items() if name != "train"}
    train = next(
        a for a in verbs.choices["train"]._actions if isinstance(a, argparse._SubParsersAction)
    )
    leaves.update({f"train {name}": p for name, p in train.choices.items()})
    return leaves


def _readme_command_lines() -> list[tuple[list[str], list[str]]]:
    """(verbs, options) of each line of the README's command-line block."""
    block = (ROOT / "README.md").read_text().split("## The command line", 1)[1]
    block = block.split("```", 2)[1]
    lines, current = [], None
    for line in block.splitlines():
        code = line.split("#", 1)[0]
        if code.startswith("tensortape "):
            words = code.split()
            if words[1] in ("train",):
                current = [f"train {v}" for v in words[2].split("|")]
            elif words[1].startswith("--"):
                current = ["top"]
            else:
                current = [words[1]]
            lines.append((current, re.findall(r"--[a-z][a-z0-9-]*", code)))
        elif code.strip() and current is not None:  # a continuation line
            lines.append((current, re.findall(r"--[a-z][a-z0-9-]*", code)))
    return lines


def test_every_readme_option_line_is_accepted_by_its_verbs():
    leaves = _leaf_parsers()
    lines = _readme_command_lines()
    assert len(lines) >= 12
    named = {v for verbs, _ in lines for v in verbs}
    assert {f"train {t}" for t in TASKS} | {"sample", "mix", "bench"} <= named
    for verbs, options in lines:
        for verb in verbs:
            if verb == "top":
                continue
            known = {o for a in leaves[verb]._actions for o in a.option_strings}
            missing = [o for o in options if o not in known]
            assert not missing, f"README: `tensortape {verb}` does not accept {missing}"


@pytest.mark.parametrize("verb", sorted(_leaf_parsers()))
def test_help_shows_every_options_default(verb):
    parser = _leaf_parsers()[verb]
    text = parser.format_help()
    for action in parser._actions:
        if not action.option_strings or action.dest in ("help",):
            continue
        if action.help == argparse.SUPPRESS:  # a deprecated alias: hidden from --help
            assert f"[{action.option_strings[0]} " not in text  # not in the usage line
            assert f"\n  {action.option_strings[0]} " not in text  # nor in the option list
            continue
        assert action.help, f"{verb} {action.option_strings[0]} has no help text"
        if action.required:
            continue  # no default to show
        shown = HelpFormatter(verb)._get_help_string(action)
        if action.default is None:
            assert "default" in action.help.lower(), f"{verb} {action.option_strings[0]}"
        else:
            assert "(default: %(default)s)" in shown, f"{verb} {action.option_strings[0]}"
    assert "(default: " in text


def test_version():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "tensortape.cli", "--version"]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert out.returncode == 0 and out.stdout.startswith("tensortape ")


def test_metrics_are_strict_json(tmp_path):
    out = tmp_path / "run"
    _train(out)
    json.loads((out / "metrics.json").read_text(), parse_constant=pytest.fail)


def test_resume_names_the_option_as_the_user_wrote_it(tmp_path, capsys):
    out = tmp_path / "gan"
    main(["train", "gan", *FAST, "--out", str(out), "--batch-size", "512"])
    argv = ["train", "gan", "--device", "cpu", "--out", str(out), "--resume", "--epochs", "2"]
    code, line = cli_error(argv + ["--gan-loss", "hinge"], capsys)
    assert code == 2 and "--gan-loss hinge (checkpoint: bce)" in line


# (verb, the old name, the new one, the dest both set)
RENAMED = [
    ("ae", "--width", "--hidden-dim", "width"),
    ("vae", "--width", "--hidden-dim", "width"),
    ("conv-vae", "--width", "--hidden-dim", "width"),
    ("pix2pix", "--hidden", "--hidden-dim", "hidden"),
    ("cyclegan", "--width", "--hidden-dim", "width"),
    ("cyclegan", "--hidden", "--disc-hidden-dim", "hidden"),
]


@pytest.mark.parametrize(("verb", "old", "new", "dest"), RENAMED)
def test_an_old_option_name_still_works_with_one_warning_line(verb, old, new, dest, capsys):
    parser = build_parser()
    capsys.readouterr()
    renamed = parser.parse_args(["train", verb, new, "7"])
    assert getattr(renamed, dest) == 7 and capsys.readouterr().err == ""
    aliased = parser.parse_args(["train", verb, f"{old}=7"])
    assert vars(aliased) == vars(renamed)
    assert capsys.readouterr().err == (
        f"tensortape train {verb}: warning: {old} is deprecated, use {new} "
        "(the old name will be removed in the next release)\n"
    )
    default = parser.parse_args(["train", verb])
    assert getattr(default, dest) is None  # the alias leaves the new option's default alone
    assert f"formerly {old}" in _leaf_parsers()[f"train {verb}"].format_help()


def test_resume_names_a_renamed_option_by_its_new_name(tmp_path, capsys):
    out = tmp_path / "ae"
    main(["train", "ae", *FAST, "--out", str(out), "--logger", "none", "--hidden-dim", "8"])
    argv = ["train", "ae", "--device", "cpu", "--out", str(out), "--resume", "--epochs", "2"]
    code, line = cli_error(argv + ["--hidden-dim", "16"], capsys)  # not its old name --width
    assert code == 2 and "--hidden-dim 16 (checkpoint: 8)" in line


def test_gan_hidden_dim_sizes_both_networks_and_sample_rebuilds_them(tmp_path):
    out = tmp_path / "gan"
    main(["train", "gan", *FAST, "--out", str(out), "--logger", "none", "--hidden-dim", "16"])
    state = engine.load(out / "checkpoint.npz")
    assert state["overrides"]["hidden"] == 16
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["settings"]["hidden"] == 16
    main(["sample", str(out / "checkpoint.npz"), "--n", "4", "--out", str(tmp_path / "s.png"),
          "--device", "cpu"])  # fmt: skip
    assert (tmp_path / "s.png").stat().st_size > 100


def test_a_failed_download_leaves_no_data_folder(tmp_path, monkeypatch, capsys):
    from engine import data

    def offline(root, kind="mnist", download=True, **kw):
        Path(root).mkdir(parents=True)  # as the downloader does before it fails
        raise RuntimeError("could not download train-images-idx3-ubyte.gz (offline?)\nTried: ...")

    monkeypatch.setattr(data, "load_mnist", offline)
    monkeypatch.chdir(tmp_path)
    argv = ["train", "gan", *FAST, "--dataset", "mnist", "--data-dir", "fresh/data"]
    code, line = cli_error(argv, capsys)
    assert code == 1 and "--data-dir fresh/data: cannot read mnist: could not download" in line
    assert not list(tmp_path.iterdir())  # neither fresh/data nor runs/gan
