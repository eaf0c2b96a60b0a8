"""The bad inputs of docs/errors.md that involve files: configs and overrides, datasets,
checkpoints, results and the command line (see ``error_cases.py`` for the conventions).
"""

from __future__ import annotations

import json
import pathlib

import numpy as np
from error_cases import Case, tiny_dense
from flax import nnx

from invnorm_jax import data, nn
from invnorm_jax.checkpoint import UNFINISHED_SUFFIX
from invnorm_jax.errors import (
    ArgumentError,
    CheckpointCorruptError,
    CheckpointIncompatibleError,
    CheckpointMissingError,
    ConfigError,
    DatasetNotFoundError,
    ResultsError,
    UsageError,
)
from invnorm_jax.pipeline import config as config_lib
from invnorm_jax.pipeline import experiment, results
from invnorm_jax.testing import write_drive_folder, write_speech_commands_folder
from invnorm_jax.train import Checkpointer, TrainConfig, train

# ------------------------------------------------------------------------------------------- helpers


def _load(spec, *overrides):
    return lambda ctx: config_lib.load_config(spec, overrides=list(overrides))


def _config_file(ctx, text: str, name: str = "mine.py") -> str:
    path = ctx.tmp / name
    path.write_text(text)
    return str(path)


def _drive(ctx, *, remove: str | None = None) -> pathlib.Path:
    root = ctx.tmp / "DRIVE"
    if not root.is_dir():
        write_drive_folder(root, height=16, width=16, train_ids=("21",), test_ids=("01", "02"))
        if remove:
            (root / remove).unlink()
    return root


def _speech(ctx, *, drop_word: str | None = None) -> pathlib.Path:
    root = ctx.tmp / "speech"
    if not root.is_dir():
        write_speech_commands_folder(root, words=("bed", "cat", "yes"), clips_per_word=3, noise=0.0, burst=False)
        if drop_word:  # a half-extracted archive: a word's folder never arrived
            for wav in (root / drop_word).glob("*.wav"):
                wav.unlink()
            (root / drop_word).rmdir()
    return root


def _checkpoint(ctx, *, damaged: bool) -> pathlib.Path:
    workdir = ctx.tmp / "run"
    if damaged:
        step = workdir / "checkpoints" / "5"
        step.mkdir(parents=True, exist_ok=True)
        (step / "half_written").write_text("x")
    else:
        ckpt = Checkpointer(workdir)
        ckpt.save(3, nn.QuantDense(3, 2, rngs=nnx.Rngs(0)))
        ckpt.close()
    return workdir


class Renamed(nnx.Module):
    """``tiny_dense``'s shapes under other names: a checkpoint of it must not load into a QuantDense."""

    def __init__(self):
        self.inner = nn.QuantDense(4, 2, rngs=nnx.Rngs(0))


def _saved(ctx, model) -> pathlib.Path:
    ckpt = Checkpointer(ctx.tmp / "run")
    ckpt.save(3, model)
    ckpt.close()
    return ctx.tmp / "run"


def _unfinished(ctx) -> pathlib.Path:
    (ctx.tmp / "run" / "checkpoints" / f"4{UNFINISHED_SUFFIX}").mkdir(parents=True)
    return ctx.tmp / "run"


def _train_tiny(n: int, batch_size: int) -> None:
    x, y = np.ones((n, 4), np.float32), np.zeros(n, np.int32)
    train(tiny_dense(), x, y, TrainConfig(steps=1, batch_size=batch_size), progress=False)


def _restore(workdir, model) -> None:
    ckpt = Checkpointer(workdir)
    try:
        ckpt.restore(model)
    finally:
        ckpt.close()


def _results(ctx, text: str) -> None:
    (ctx.tmp / "results.json").write_text(text)
    results.load(ctx.tmp)


def _trained_with(ctx, spec: str, *overrides: str, damaged_checkpoint: str | None = None) -> pathlib.Path:
    """A workdir whose methods' config.json is ``spec`` + ``overrides``; optionally a damaged checkpoint."""
    workdir = ctx.tmp / "runs"
    trained = config_lib.load_config(spec, overrides=list(overrides))
    for method in trained.methods:
        config_lib.save(trained, workdir / method)
    if damaged_checkpoint:
        step = workdir / damaged_checkpoint / "checkpoints" / "5"
        step.mkdir(parents=True, exist_ok=True)
        (step / "half_written").write_text("x")
    return workdir


def _foreign(ctx) -> str:
    folder = ctx.tmp / "photos"
    folder.mkdir(exist_ok=True)
    (folder / "holiday.jpg").write_bytes(b"\xff\xd8")
    (folder / "notes.txt").write_text("mine")
    return str(folder)


TINY = ("model.kwargs.widths=(4,)", "model.kwargs.blocks=(1,)")  # a ResNet that builds fast
TINY_RESNET = tuple(f"--config.{o}" for o in TINY)


def _cli(*argv):
    return lambda ctx: list(argv)


# ------------------------------------------------------------------------------------------- the table

CASES = [
    # configs and --config.KEY=VALUE overrides
    Case(
        "cfg-unknown",
        "load_config('digitz')",
        _load("digitz"),
        ConfigError,
        r"config 'digitz' not found \(did you mean 'digits'\?\): give a path",
    ),
    Case(
        "cfg-variant",
        "load_config('digits:huge')",
        _load("digits:huge"),
        ConfigError,
        r"variant 'huge' in --config 'digits:huge' is unknown; expected one of \('full', 'quick', 'smoke'\)",
    ),
    Case(
        "cfg-syntax",
        "load_config('broken.py'), a syntax error on line 2",
        lambda ctx: config_lib.load_config(
            _config_file(ctx, "def get_config(variant='full'):\n    return dict(name='x'\n", "broken.py")
        ),
        ConfigError,
        r"config file .*broken.py has a syntax error on line 2",
    ),
    Case(
        "cfg-no-function",
        "load_config('mine.py'), no get_config",
        lambda ctx: config_lib.load_config(_config_file(ctx, "CONFIG = {}\n")),
        ConfigError,
        r"has no get_config\(variant\) function: define one",
    ),
    Case(
        "cfg-raises",
        "load_config('mine.py'), its get_config raises",
        lambda ctx: config_lib.load_config(_config_file(ctx, "def get_config(variant='full'):\n    return cfg\n")),
        ConfigError,
        r"mine.py raised NameError on line 2 while running get_config\('full'\): name 'cfg'",
    ),
    Case(
        "cfg-kwargs",
        "a config file with model.kwargs.widht=(16, 32)",
        lambda ctx: config_lib.load_config(
            _config_file(
                ctx,
                (
                    "from invnorm_jax.pipeline.configs.digits import get_config as base\n\ndef get_config(variant='full'):\n"
                    "    c = base(variant)\n    c.model.kwargs.widht = (16, 32)\n    return c\n"
                ),
            )
        ),
        ConfigError,
        r"model.kwargs.widht: 'resnet' takes no argument 'widht' \(did you mean 'widths'\?\)",
    ),
    Case(
        "ovr-key",
        "--config.eval.num_chip=7",
        _load("digits", "eval.num_chip=7"),
        ConfigError,
        r"the config 'digits' has no key 'eval.num_chip' \(did you mean 'eval.num_chips'\?\)",
    ),
    Case(
        "ovr-type",
        "--config.eval.num_chips=many",
        _load("digits", "eval.num_chips=many"),
        ConfigError,
        r"--config.eval.num_chips='many': expected an int \(the config has 100\)",
    ),
    Case(
        "ovr-value",
        "--config.eval.num_chips=0",
        _load("digits", "eval.num_chips=0"),
        ConfigError,
        r"eval.num_chips=0 must be an integer >= 1",
    ),
    Case(
        "ovr-bool",
        "--config.eval.deterministic=maybe",
        _load("digits", "eval.deterministic=maybe"),
        ConfigError,
        r"expected true or false",
    ),
    Case(
        "ovr-form",
        "--config.eval (no value)",
        _load("digits", "eval"),
        ConfigError,
        r"must look like --config.KEY=VALUE",
    ),
    Case(
        "ovr-group",
        "--config.eval=3",
        _load("digits", "eval=3"),
        ConfigError,
        r"--config.eval is a group of keys; set one of its fields",
    ),
    Case(
        "ovr-metric",
        "--config.metric=f1",
        _load("digits", "metric=f1"),
        ConfigError,
        r"metric='f1' is unknown; expected one of \('accuracy', 'rmse', 'miou'\)",
    ),
    Case(
        "ovr-method",
        "--config.methods=nn,bnn",
        _load("digits", "methods=nn,bnn"),
        ConfigError,
        r"methods='bnn' is unknown \(did you mean 'nn'\?\)",
    ),
    Case(
        "cfg-methods",
        "experiment.check_methods(load_config('digits'), ['bayes'])",
        lambda ctx: experiment.check_methods(config_lib.load_config("digits"), ["bayes"]),
        ConfigError,
        r"methods \['bayes'\] are not among the methods of config 'digits', \('nn', .*\): pick from those",
    ),
    Case(
        "ovr-level",
        "--config.sweeps.bit_flip.levels=0,1.5",
        _load("digits", "sweeps.bit_flip.levels=0,1.5"),
        ConfigError,
        r"sweeps.bit_flip: Fault level=1.5 is a probability",
    ),
    Case(
        "ovr-level-type",
        "--config.sweeps.bit_flip.levels=0,high",
        _load("digits", "sweeps.bit_flip.levels=0,high"),
        ConfigError,
        r"sweeps.bit_flip.levels holds 'high': expected numbers",
    ),
    Case(
        "ovr-ood-regression",
        "--config co2 --config.ood.shifts=gaussian_noise",
        _load("co2", "ood.shifts=gaussian_noise"),
        ConfigError,
        r"OOD detection needs a classifier, and metric='rmse' is a regression metric",
    ),
    Case(
        "ovr-weight-decay",
        "--config.train.weight_decay=1e-4",
        _load("digits", "train.weight_decay=1e-4"),
        ConfigError,
        r"weight_decay=0.0001 would be ignored by optimizer='adam': use optimizer='adamw'",
    ),
    Case(
        "ovr-dataset-arg",
        "--config drive_unet --config.dataset.kwargs.chanel=green",
        _load("drive_unet", "dataset.kwargs.chanel=green"),
        ConfigError,
        r"no key 'dataset.kwargs.chanel' \(did you mean 'dataset.kwargs.channel'\?\)",
    ),
    Case(
        "train-loss",
        "TrainConfig(loss='hinge')",
        lambda ctx: TrainConfig(loss="hinge"),
        ArgumentError,
        r"loss='hinge' is not allowed; expected one of \('xent', 'mse', 'seg_xent'\)",
    ),
    Case(
        "train-steps", "TrainConfig(steps=0)", lambda ctx: TrainConfig(steps=0), ArgumentError, r"steps=0 must be >= 1"
    ),
    Case(
        "train-batch",
        "train(model, x[10], y[10], TrainConfig(batch_size=64))",
        lambda ctx: _train_tiny(10, 64),
        ArgumentError,
        r"train: batch_size=64 exceeds the 10 training examples: use batch_size <= 10 \(--config.train.batch_size=10\)",
    ),
    Case(
        "train-lengths",
        "train(model, x[10], y[9], config)",
        lambda ctx: train(
            tiny_dense(),
            np.ones((10, 4), np.float32),
            np.zeros(9, np.int32),
            TrainConfig(steps=1, batch_size=2),
            progress=False,
        ),
        ArgumentError,
        r"train: x has 10 examples but y has 9: give one target per example",
    ),
    # datasets
    Case(
        "data-unknown",
        "get_dataset('digit')",
        lambda ctx: data.get_dataset("digit"),
        ArgumentError,
        r"unknown dataset 'digit' \(did you mean 'digits'\?\); known datasets: cifar10, co2",
    ),
    Case(
        "data-argument",
        "get_dataset('drive', chanel='green')",
        lambda ctx: data.get_dataset("drive", chanel="green"),
        ArgumentError,
        r"dataset 'drive' takes no argument 'chanel' \(did you mean 'channel'\?\)",
    ),
    Case(
        "data-drive-missing",
        "load_drive('/data/DRIVE'), no such folder",
        lambda ctx: data.load_drive(ctx.tmp / "DRIVE"),
        DatasetNotFoundError,
        r"DRIVE not found at .*DRIVE \(no such folder\)\. Expected layout: .*training/1st_manual/<id>_manual1.gif",
    ),
    Case(
        "data-drive-half",
        "load_drive('/data/DRIVE'), a mask missing",
        lambda ctx: data.load_drive(_drive(ctx, remove="test/mask/02_test_mask.gif")),
        DatasetNotFoundError,
        r"DRIVE at .*DRIVE is incomplete \(missing .*test/mask/02_test_mask.gif\)",
    ),
    Case(
        "data-speech-missing",
        "load_speech_commands('/data/speech', source='folder'), no such folder",
        lambda ctx: data.load_speech_commands(ctx.tmp / "speech", source="folder"),
        DatasetNotFoundError,
        r"Speech Commands v0.02 not found at .*speech \(no such folder\)\. .*speech_commands_v0.02.tar.gz",
    ),
    Case(
        "data-speech-half",
        "load_speech_commands('/data/speech', source='folder'), a word missing",
        lambda ctx: data.load_speech_commands(_speech(ctx, drop_word="cat"), source="folder"),
        DatasetNotFoundError,
        r"is incomplete \(\d+ clips listed in validation_list.txt are missing, e.g. cat/",
    ),
    Case(
        "data-cifar10",
        "load_cifar10(data_dir='/data'), not prepared",
        lambda ctx: data.load_cifar10(data_dir=ctx.tmp),
        DatasetNotFoundError,
        r"TFDS dataset 'cifar10' is not prepared \(in ArrayRecord format\) under .*download_and_prepare",
    ),
    # checkpoints and results
    Case(
        "ckpt-none",
        "Checkpointer('/data/run').restore(model), nothing saved",
        lambda ctx: _restore(ctx.tmp / "run", tiny_dense()),
        CheckpointMissingError,
        r"no checkpoint in .*run/checkpoints: train first",
    ),
    Case(
        "ckpt-unfinished",
        "Checkpointer('/data/run').restore(model), only a save interrupted while writing",
        lambda ctx: _restore(_unfinished(ctx), tiny_dense()),
        CheckpointMissingError,
        r"no checkpoint in .*run/checkpoints \(only the unfinished save of step 4, interrupted while writing\)",
    ),
    Case(
        "ckpt-damaged",
        "Checkpointer('/data/run').restore(model), a damaged step folder",
        lambda ctx: _restore(_checkpoint(ctx, damaged=True), tiny_dense()),
        CheckpointCorruptError,
        r"checkpoint .*checkpoints/\d+ cannot be read: its files are damaged .* delete",
    ),
    Case(
        "ckpt-other-shape",
        "Checkpointer('/data/run').restore(model), saved from another shape",
        lambda ctx: _restore(_checkpoint(ctx, damaged=False), tiny_dense()),
        CheckpointIncompatibleError,
        r"checkpoints/3 does not fit the model being restored: the model differs.* model/kernel is float32\[3, 2\] "
        r"in the checkpoint but float32\[4, 2\] now",
    ),
    Case(
        "ckpt-other-names",
        "Checkpointer('/data/run').restore(model), saved from layers of other names",
        lambda ctx: _restore(_saved(ctx, Renamed()), tiny_dense()),
        CheckpointIncompatibleError,
        r"checkpoints/3 does not fit the model being restored: the model differs.* model/inner/kernel is in the "
        r"checkpoint but not in the model built now",
    ),
    Case(
        "results-version",
        "results.load('/data'), schema version 1",
        lambda ctx: _results(ctx, json.dumps({"version": 1, "tasks": {}})),
        ResultsError,
        r"has results schema version 1, and this invnorm-jax reads version \d+: re-run the sweep",
    ),
    Case(
        "results-damaged",
        "results.load('/data'), not JSON",
        lambda ctx: _results(ctx, "{"),
        ResultsError,
        r"results.json is not valid JSON .* the file is damaged; re-run the sweep",
    ),
    # the command line: one line on stderr, exit status 2, checked before anything is trained
    Case(
        "cli-chips",
        "invnorm-jax demo --chips many",
        _cli("demo", "--chips", "many"),
        UsageError,
        r"argument --chips: 'many' is not an integer: expected a count >= 1",
        cli=True,
    ),
    Case(
        "cli-chips-zero",
        "invnorm-jax demo --chips 0",
        _cli("demo", "--chips", "0"),
        UsageError,
        r"argument --chips: 0 is not a count >= 1",
        cli=True,
    ),
    Case(
        "cli-tasks",
        "invnorm-jax demo --tasks cifar",
        _cli("demo", "--tasks", "cifar"),
        UsageError,
        r"argument --tasks: invalid choice: 'cifar' \(choose from 'digits', 'mnist1d', 'co2'\)",
        cli=True,
    ),
    Case(
        "cli-no-config",
        "invnorm-jax train",
        _cli("train"),
        UsageError,
        r"the following arguments are required: --config \(see invnorm-jax train --help\)",
        cli=True,
    ),
    Case(
        "cli-command",
        "invnorm-jax trian",
        _cli("trian"),
        UsageError,
        r"argument command: invalid choice: 'trian'",
        cli=True,
    ),
    Case(
        "cli-config",
        "invnorm-jax train --config digitz",
        _cli("train", "--config", "digitz"),
        ConfigError,
        r"config 'digitz' not found \(did you mean 'digits'\?\): give a path",
        cli=True,
    ),
    Case(
        "cli-override",
        "invnorm-jax train --config digits --config.eval.num_chip=3",
        _cli("train", "--config", "digits", "--config.eval.num_chip=3"),
        ConfigError,
        r"did you mean 'eval.num_chips'\?",
        cli=True,
    ),
    Case(
        "cli-method",
        "invnorm-jax demo --methods bayes",
        lambda ctx: ["demo", "--methods", "bayes", "--out", str(ctx.tmp / "demo")],
        ConfigError,
        r"--method 'bayes' is not a method of config 'digits'; pick from \('nn', 'spindrop'",
        cli=True,
    ),
    Case(
        "cli-level",
        "invnorm-jax demo --config.sweeps.bit_flip.levels=0,1.5",
        lambda ctx: ["demo", "--config.sweeps.bit_flip.levels=0,1.5", "--out", str(ctx.tmp / "demo")],
        ConfigError,
        r"config 'digits': sweeps.bit_flip: Fault level=1.5 is a probability",
        cli=True,
    ),
    Case(
        "cli-ood-regression",
        "invnorm-jax ood --task co2",
        lambda ctx: ["ood", "--task", "co2", "--out", str(ctx.tmp / "ood")],
        ConfigError,
        r"config 'co2' has no OOD study: OOD detection needs a classifier, and 'co2' is a regression task",
        cli=True,
    ),
    Case(
        "cli-model",
        "invnorm-jax train --config digits --config.model.kwargs.widths=16,32,64",
        lambda ctx: [
            "train",
            "--config",
            "digits",
            "--config.model.kwargs.widths=16,32,64",
            "--workdir",
            str(ctx.tmp / "w"),
        ],
        ConfigError,
        r"model 'resnet' \(nn\) cannot be built from model.kwargs: widths=\(16, 32, 64\) and blocks=\(1, 1\)",
        cli=True,
    ),
    Case(
        "cli-drive-missing",
        "invnorm-jax train --config drive_unet (INVNORM_DATA_DIR=/data)",
        lambda ctx: (
            ctx.monkeypatch.setenv("INVNORM_DATA_DIR", str(ctx.tmp)),
            ["train", "--config", "drive_unet", "--workdir", str(ctx.tmp / "w")],
        )[1],
        DatasetNotFoundError,
        r"DRIVE not found at .*DRIVE \(no such folder\)",
        cli=True,
    ),
    Case(
        "cli-speech-half",
        "invnorm-jax train --config speech_m5 --config.dataset.kwargs.root=/data/speech",
        lambda ctx: [
            "train",
            "--config",
            "speech_m5",
            f"--config.dataset.kwargs.root={_speech(ctx, drop_word='cat')}",
            "--workdir",
            str(ctx.tmp / "w"),
        ],
        DatasetNotFoundError,
        r"Speech Commands v0.02 at .*speech is incomplete",
        cli=True,
    ),
    Case(
        "cli-out-foreign",
        "invnorm-jax demo --out /data/photos (other files)",
        lambda ctx: ["demo", "--out", _foreign(ctx)],
        UsageError,
        r"--out .*photos already holds other files \(holiday.jpg, notes.txt\) and is not an invnorm-jax run",
        cli=True,
    ),
    Case(
        "cli-out-file",
        "invnorm-jax demo --out /data/photos/notes.txt",
        lambda ctx: ["demo", "--out", _foreign(ctx) + "/notes.txt"],
        UsageError,
        r"--out .*notes.txt is a file: give a folder",
        cli=True,
    ),
    Case(
        "cli-untrained",
        "invnorm-jax sweep --config digits:smoke --workdir /data/empty",
        lambda ctx: ["sweep", "--config", "digits:smoke", "--workdir", str(ctx.tmp / "empty")],
        CheckpointMissingError,
        r"no checkpoint in .*empty/nn/checkpoints: train first \(invnorm-jax train --config digits:smoke",
        cli=True,
    ),
    Case(
        "cli-other-config",
        "invnorm-jax sweep --config digits:smoke --workdir /data/runs (trained with seed 1)",
        lambda ctx: [
            "sweep",
            "--config",
            "digits:smoke",
            "--workdir",
            str(_trained_with(ctx, "digits:smoke", "seed=1")),
        ],
        ConfigError,
        r"were trained with a different config \(digits, variant 'smoke'\); differing keys: seed: 1 -> 0",
        cli=True,
    ),
    Case(
        "cli-damaged-checkpoint",
        "invnorm-jax evaluate --config digits:smoke --method proposed (damaged checkpoint)",
        lambda ctx: [
            "evaluate",
            "--config",
            "digits:smoke",
            "--method",
            "proposed",
            "--no-progress",
            *TINY_RESNET,
            "--workdir",
            str(_trained_with(ctx, "digits:smoke", *TINY, damaged_checkpoint="proposed")),
        ],
        CheckpointCorruptError,
        r"checkpoint .*proposed/checkpoints/5 cannot be read",
        cli=True,
        preflight=False,
    ),
    Case(
        "cli-batch-size",
        "invnorm-jax train --config digits:smoke --config.train.batch_size=100000",
        lambda ctx: [
            "train",
            "--config",
            "digits:smoke",
            "--config.train.batch_size=100000",
            "--method",
            "nn",
            "--no-progress",
            *TINY_RESNET,
            "--workdir",
            str(ctx.tmp / "w"),
        ],
        ArgumentError,
        r"digits/nn: batch_size=100000 exceeds the \d+ training examples: use batch_size <= \d+",
        cli=True,
        preflight=False,
    ),
]
