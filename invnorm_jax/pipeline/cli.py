"""The ``invnorm-jax`` console script.

In detail: docs/pipeline.md (`invnorm_jax.pipeline.cli`).
"""

from __future__ import annotations

import argparse
import datetime
import logging
import os
import pathlib
import sys
import time

from invnorm_jax.pipeline.preflight import ArgumentParser, check_output_folder, check_run, count, one_line
from invnorm_jax.pipeline.study import STUDY_TASKS

DEMO_TASKS = ("digits", "mnist1d", "co2")
log = logging.getLogger("invnorm_jax")


def _train_hint(args) -> str:
    """The command that trains what ``args`` asks to load."""
    variant = f" --{_variant(args)}" if _variant(args) else ""
    return f"invnorm-jax train --config {args.config or getattr(args, 'task', None)}{variant}"


def _default_out(prefix: str) -> pathlib.Path:
    return pathlib.Path("runs") / f"{prefix}-{datetime.datetime.now():%Y%m%d-%H%M%S}"


def _variant(args) -> str | None:
    return "smoke" if args.smoke else "quick" if args.quick else None


def _overrides(args) -> list[str]:
    """The ``--config.KEY=VALUE`` overrides, with ``--chips`` / ``--samples`` as shorthands."""
    items = list(args.overrides)
    if getattr(args, "chips", None) is not None:
        items.append(f"eval.num_chips={args.chips}")
    if getattr(args, "samples", None) is not None:
        items.append(f"eval.num_samples={args.samples}")
    return items


def _settings(args, variant: str, seconds: float) -> dict:
    import jax

    from invnorm_jax import __version__

    return {
        "command": args.command,
        "variant": variant,
        "overrides": _overrides(args),
        "wall_seconds": round(seconds, 1),
        "invnorm_jax": __version__,
        "jax": jax.__version__,
        "backend": jax.default_backend(),
    }


def _summary(results, report_path, seconds: float) -> None:
    from invnorm_jax.pipeline import report

    if any(t.methods for t in results.tasks.values()):
        print("\n" + report.table1(results))
    for line in report.verdicts(results):
        print("* " + line)
    print(f"\nreport: {report_path}\nwall time: {seconds / 60:.1f} min")


def _run(args, configs: dict, out, workdirs: dict, *, name: str = "results.json", **run_kwargs) -> int:
    """Run every config (train once -> sweeps -> OOD), then write the run's files into ``out``."""
    from invnorm_jax.pipeline import experiment, report
    from invnorm_jax.pipeline.results import Results

    start = time.time()
    results = Results()
    for task, config in configs.items():
        log.info("== %s: %s on %s", task, config.model.name, config.dataset.name)
    # Every method of every task in one pool of workers (longest first): no core idles at a task's end.
    results.tasks.update(
        experiment.run_tasks(
            configs,
            workdirs,
            methods=args.method,
            progress=not args.no_progress,
            seeds=getattr(args, "seeds", 1),
            **run_kwargs,
        )
    )
    variant = next(iter(configs.values())).variant
    results.settings = _settings(args, variant, time.time() - start)
    path = report.write_report(results, out, name=name)
    _summary(results, path, time.time() - start)
    return 0


def _load(args, spec: str):
    from invnorm_jax.pipeline import config as config_lib

    return config_lib.load_config(spec, _variant(args), _overrides(args))


def cmd_demo(args) -> int:
    out = pathlib.Path(args.out) if args.out else _default_out("demo")
    configs = {task: _load(args, task) for task in args.tasks}  # every config validated before any training
    workdirs = {task: out / task for task in configs}
    check_output_folder(out)
    check_run(configs, workdirs, args.method, trained=False, seeds=args.seeds)
    return _run(args, configs, out, workdirs, ood=not args.no_ood)


def cmd_study(args) -> int:
    from invnorm_jax.pipeline import report, study
    from invnorm_jax.pipeline.results import Results

    start = time.time()
    out = pathlib.Path(args.out) if args.out else _default_out("study")
    configs = study.study_configs(_variant(args), _overrides(args), tuple(args.tasks), args.method)
    workdirs = study.study_workdirs(configs, out)
    check_output_folder(out)
    check_run(configs, workdirs, None, trained=False, seeds=args.seeds)
    for task, config in configs.items():
        log.info(
            "== %s: %s on %s, methods %s, %d seeds",
            task,
            config.model.name,
            config.dataset.name,
            ", ".join(config.methods),
            args.seeds,
        )
    results = Results(
        tasks=study.run_study(configs, out, seeds=args.seeds, progress=not args.no_progress, ood=not args.no_ood)
    )
    results.settings = {
        **_settings(args, next(iter(configs.values())).variant, time.time() - start),
        "seeds": args.seeds,
    }
    path = report.write_report(results, out)
    earlier = study.report_earlier_placement(
        configs, out, seeds=args.seeds, progress=not args.no_progress, settings=results.settings
    )
    if earlier:
        print(f"\nthe pre-activation sweeps at preactivation_site={study.EARLIER_PLACEMENT!r}: {earlier}")
    _summary(results, path, time.time() - start)
    return 0


def _workdir(args, config) -> pathlib.Path:
    return pathlib.Path(args.workdir) if args.workdir else pathlib.Path("runs") / f"{config.name}-{config.variant}"


def cmd_train(args) -> int:
    from invnorm_jax.pipeline import experiment

    config = _load(args, args.config)
    workdir = _workdir(args, config)
    check_output_folder(workdir, "--workdir")
    check_run({config.name: config}, {config.name: workdir}, args.method, trained=False, seeds=args.seeds)
    methods = experiment.check_methods(config, args.method)
    split = experiment.load_data(config)
    for s in range(args.seeds):
        seeded = experiment.with_seed(config, config.seed + s)
        for method in methods:
            wd = experiment.seed_workdir(workdir, method, s)
            experiment.train_method(seeded, method, split, wd, progress=not args.no_progress)
            print(f"trained {config.name}/{method} (seed {seeded.seed}): checkpoints in {wd / 'checkpoints'}")
    return 0


def _check_trained(args, config, workdir) -> None:
    if args.out and pathlib.Path(args.out) != workdir:
        check_output_folder(args.out)
    check_run(
        {config.name: config},
        {config.name: workdir},
        args.method,
        trained=True,
        train_hint=_train_hint(args),
        seeds=args.seeds,
    )


def cmd_sweep(args) -> int:
    config = _load(args, args.config)
    workdir = _workdir(args, config)
    _check_trained(args, config, workdir)
    return _run(args, {config.name: config}, args.out or workdir, {config.name: workdir}, train_models=False, ood=False)


def cmd_evaluate(args) -> int:
    config = _load(args, args.config)
    workdir = _workdir(args, config)
    _check_trained(args, config, workdir)
    return _run(
        args,
        {config.name: config},
        args.out or workdir,
        {config.name: workdir},
        train_models=False,
        sweeps=False,
        ood=False,
        name="evaluate.json",
    )


def cmd_ood(args) -> int:
    from invnorm_jax.errors import ConfigError
    from invnorm_jax.metrics import TASK_METRICS

    config = _load(args, args.config or args.task)
    if not config.ood.shifts and not TASK_METRICS[config.metric].classification:
        raise ConfigError(
            f"config {config.name!r} has no OOD study: OOD detection needs a classifier, and "
            f"{config.name!r} is a regression task (metric={config.metric!r}); use a classification "
            "task, e.g. --task digits or --task mnist1d."
        )
    if not config.ood.shifts:
        raise ConfigError(
            f"config {config.name!r} has no OOD study (ood.shifts is empty): give shifts, e.g. "
            "--config.ood.shifts=rotation,uniform_noise, or a config that has one."
        )
    out = pathlib.Path(args.out) if args.out else _default_out(f"ood-{config.name}")
    workdir = pathlib.Path(args.workdir) if args.workdir else out
    check_output_folder(out)
    if workdir != out:
        check_output_folder(workdir, "--workdir")
    check_run(
        {config.name: config}, {config.name: workdir}, args.method, trained=args.no_train, train_hint=_train_hint(args)
    )
    return _run(
        args, {config.name: config}, out, {config.name: workdir}, train_models=not args.no_train, sweeps=False, ood=True
    )


def cmd_ablate(args) -> int:
    from invnorm_jax.pipeline import ablate, report

    start = time.time()
    spec = args.config or args.task
    out = pathlib.Path(args.out) if args.out else _default_out(f"ablate-{spec}")
    config = _load(args, spec)
    check_output_folder(out)
    check_run({config.name: config}, {config.name: out / "default"}, None, trained=False, seeds=args.seeds)
    result = ablate.run_ablations(
        spec, out, variant=_variant(args), overrides=_overrides(args), progress=not args.no_progress, seeds=args.seeds
    )
    print(report.ablation_markdown(result))
    print(
        f"written: {out / 'ablation.md'}, {out / 'ablation.json'}, {out / 'ablation.png'}\n"
        f"wall time: {(time.time() - start) / 60:.1f} min"
    )
    return 0


def _common(p: argparse.ArgumentParser, *, config: bool = True) -> None:
    if config:
        p.add_argument(
            "--config",
            required=True,
            metavar="NAME_OR_PATH[:VARIANT]",
            help="a shipped config (digits, cifar10_resnet18, ...) or a .py file with get_config()",
        )
    p.add_argument("--smoke", action="store_true", help="the config's smoke variant: a few steps, tiny eval")
    p.add_argument("--quick", action="store_true", help="the config's quick variant")
    p.add_argument("--method", nargs="+", help="methods to run (default: all of the config's)")
    p.add_argument("--workdir", help="folder of checkpoints (default runs/<name>-<variant>)")
    p.add_argument("--out", help="results folder (default: the workdir)")
    p.add_argument("--chips", type=count, help="shorthand for --config.eval.num_chips")
    p.add_argument("--samples", type=count, help="shorthand for --config.eval.num_samples")
    _seeds(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--debug", action="store_true", help="show the traceback of an error")


def _seeds(p: argparse.ArgumentParser, default: int = 1) -> None:
    p.add_argument(
        "--seeds",
        type=count,
        default=default,
        help=f"training seeds per method (seed, seed+1, ...; same chips for each; default {default})",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="invnorm-jax",
        description="Inverted normalization with stochastic affine transformations: train Bayesian NNs and "
        "evaluate them on simulated faulty in-memory-computing chips. Every subcommand takes "
        "--config.KEY=VALUE overrides (e.g. --config.eval.num_chips=7).",
    )
    parser.add_argument("--cache-dir", help="JAX compilation cache (default runs/.jax-cache; 'none': off)")
    sub = parser.add_subparsers(dest="command", required=True)

    for name, func, tasks, seeds, text, quick in (
        (
            "demo",
            cmd_demo,
            DEMO_TASKS,
            1,
            "train the 4 methods on offline data, sweep faults over 100 chips, write a report",
            "about 3 minutes",
        ),
        (
            "study",
            cmd_study,
            STUDY_TASKS,
            3,
            "the fair study of the paper's claims: digits, a deeper digits network, "
            "MNIST-1D and CO2, 3 training seeds, both readings of the baselines' dropout",
            "the configs' quick variants",
        ),
    ):
        p = sub.add_parser(name, help=text, description=text)
        p.add_argument("--quick", action="store_true", help=f"fewer steps, levels and samples ({quick})")
        p.add_argument(
            "--smoke", action="store_true", help="a few steps and 4 chips: checks the pipeline, not the method"
        )
        p.add_argument("--out", help=f"output folder (default runs/{name}-<time>); rerunning resumes / reuses it")
        p.add_argument("--tasks", nargs="+", default=list(tasks), choices=tasks, help="offline tasks")
        p.add_argument("--methods", "--method", dest="method", nargs="+", help="methods (default all four)")
        p.add_argument("--chips", type=count, help="shorthand for --config.eval.num_chips (default 100)")
        p.add_argument("--samples", type=count, help="shorthand for --config.eval.num_samples")
        _seeds(p, default=seeds)
        p.add_argument("--no-ood", action="store_true", help="skip the out-of-distribution studies")
        p.add_argument("--no-progress", action="store_true", help="no progress bars")
        p.add_argument("--debug", action="store_true", help="show the traceback of an error")
        p.set_defaults(func=func)

    for name, func, text in (
        ("train", cmd_train, "train the config's methods, checkpointing into --workdir (resumes if interrupted)"),
        ("sweep", cmd_sweep, "fault sweeps over simulated chips for trained checkpoints; writes the report"),
        ("evaluate", cmd_evaluate, "fault-free metric of trained checkpoints (MC-averaged)"),
    ):
        p = sub.add_parser(name, help=text, description=text)
        _common(p)
        p.set_defaults(func=func)

    ood = sub.add_parser("ood", help="uncertainty and out-of-distribution detection under shifts (Fig. 7)")
    src = ood.add_mutually_exclusive_group(required=True)
    src.add_argument("--config", metavar="NAME_OR_PATH[:VARIANT]", help="config name or file")
    src.add_argument("--task", choices=DEMO_TASKS, help="an offline demo task")
    _common(ood, config=False)
    ood.add_argument("--no-train", action="store_true", help="only load checkpoints from --workdir")
    ood.set_defaults(func=cmd_ood)

    abl = sub.add_parser(
        "ablate",
        help="ablations against the defaults, 100 chips each: every method's dropout "
        "rate and per-inference noise, the proposed method's mode, init and T",
    )
    src = abl.add_mutually_exclusive_group(required=True)
    src.add_argument("--config", metavar="NAME_OR_PATH[:VARIANT]", help="config name or file")
    src.add_argument("--task", choices=DEMO_TASKS, help="an offline demo task")
    abl.add_argument("--smoke", action="store_true", help="the config's smoke variant")
    abl.add_argument("--quick", action="store_true", help="the config's quick variant")
    abl.add_argument("--out", help="output folder (default runs/ablate-<name>-<time>); rerunning reuses it")
    abl.add_argument("--chips", type=count, help="shorthand for --config.eval.num_chips")
    _seeds(abl)
    abl.add_argument("--no-progress", action="store_true", help="no progress bars")
    abl.add_argument("--debug", action="store_true", help="show the traceback of an error")
    abl.set_defaults(func=cmd_ablate, method=None)
    return parser


def parse_args(argv=None) -> argparse.Namespace:
    """Parse ``argv``; ``--config.KEY=VALUE`` (or ``--config.KEY VALUE``) items become ``args.overrides``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    overrides, rest, i = [], [], 0
    while i < len(argv):
        item = argv[i]
        if item.startswith("--config."):
            if "=" not in item and i + 1 < len(argv):
                item, i = f"{item}={argv[i + 1]}", i + 1
            overrides.append(item.removeprefix("--config."))
        else:
            rest.append(item)
        i += 1
    args = build_parser().parse_args(rest)
    args.overrides = overrides
    return args


def _compilation_cache(args) -> None:
    """JAX's persistent compilation cache, on by default: a second run does not compile again.

    ``--cache-dir`` (or ``INVNORM_CACHE_DIR``) picks the folder, ``none`` switches it off;
    default ``runs/.jax-cache``. Safe to delete at any time.
    """
    folder = getattr(args, "cache_dir", None) or os.environ.get("INVNORM_CACHE_DIR") or "runs/.jax-cache"
    if folder.lower() == "none":
        return
    import jax

    jax.config.update("jax_compilation_cache_dir", str(pathlib.Path(folder).absolute()))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)  # CPU compiles are short but many
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    if jax.default_backend() == "cpu":
        # JAX also points XLA's GPU autotuning cache into the folder, and that path is part of
        # every entry's key, so a copied or moved folder would miss everything. A CPU has
        # nothing to autotune: leaving it off makes the folder relocatable (a CI cache, a copy).
        jax.config.update("jax_persistent_cache_enable_xla_caches", "none")


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time (a notebook or a test may swap it)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


def _log_to_stderr() -> None:
    """The library's INFO messages on stderr (absl, imported by orbax, claims the root logger)."""
    if not any(isinstance(h, _StderrHandler) for h in log.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False


def main(argv=None) -> int:
    """Run ``invnorm-jax``; returns the exit status (2: an error in what was asked for)."""
    from invnorm_jax.errors import InputError

    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("INVNORM_DEBUG", "") not in ("", "0")
    prog = "invnorm-jax"
    try:
        args = parse_args(argv)
        prog = f"invnorm-jax {args.command}"
        _log_to_stderr()
        _compilation_cache(args)
        return args.func(args)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; rerun the same command to resume from the last checkpoint.", file=sys.stderr)
        return 130
    except (InputError, OSError) as err:
        if debug:
            raise
        # Bad input is the user's to fix: say what, in one line, without a traceback.
        print(f"{getattr(err, 'prog', prog)}: error: {one_line(err)}", file=sys.stderr)
        return 2
    except Exception as err:
        print(
            f"{prog}: unexpected {type(err).__name__}, traceback below: a bug in invnorm-jax (please report it) "
            "unless its message names an input to fix.",
            file=sys.stderr,
        )
        raise


if __name__ == "__main__":
    sys.exit(main())
