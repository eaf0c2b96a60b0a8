"""The ``invnorm-jax`` console script.

``demo`` trains the four methods on the offline tasks and sweeps faults over 100 simulated
chips; ``train``, ``sweep``, ``evaluate`` and ``ood`` work from one config file each
(``experiments/configs/*.py``).
"""

from __future__ import annotations

import argparse
import datetime
import pathlib
import sys
import time

DEMO_TASKS = ("digits", "mnist1d", "co2")


def _default_out(prefix: str) -> pathlib.Path:
    return pathlib.Path("runs") / f"{prefix}-{datetime.datetime.now():%Y%m%d-%H%M%S}"


def _variant(args) -> str:
    if getattr(args, "smoke", False):
        return "smoke"
    if getattr(args, "quick", False):
        return "quick"
    return getattr(args, "variant", None) or "full"


def _settings(args, variant: str, seconds: float | None = None) -> dict:
    # None: each config's own chip and sample counts (recorded per method in the results).
    s = {"variant": variant, "num_chips": args.chips, "num_samples": args.samples}
    if seconds is not None:
        s["wall_seconds"] = round(seconds, 1)
    return s


def _print_summary(results: dict, report_path, seconds: float) -> None:
    from invnorm_jax import report

    print("\n" + report.table1(results))
    for line in report.verdicts(results):
        print("* " + line)
    print(f"\nreport: {report_path}\nwall time: {seconds / 60:.1f} min")


def cmd_demo(args) -> int:
    from invnorm_jax import experiment, report

    start = time.time()
    variant = "smoke" if args.smoke else "quick" if args.quick else "full"
    out = pathlib.Path(args.out) if args.out else _default_out("demo")
    results = {"tasks": {}}
    extra = []
    for task in args.tasks:
        config = experiment.load_config(task, variant)
        print(f"== {task}: {config['model']['name']} on {config['dataset']['name']}")
        results["tasks"][task] = experiment.run_task(
            config, out / task, methods=args.methods, chips=args.chips, samples=args.samples, progress=not args.no_progress
        )
        if task == "digits" and not args.no_ood and "ood" in config:
            from invnorm_jax import ood_eval

            # The OOD study keeps its own (smaller) chip count from the config's ``ood`` entry.
            ood_results = ood_eval.run_ood(config, out / task, methods=args.methods, samples=args.samples,
                                           out_dir=out, progress=not args.no_progress)
            extra.append(ood_eval.markdown(ood_results))
    seconds = time.time() - start
    results["settings"] = _settings(args, variant, seconds)
    path = report.write_report(results, out, extra_sections=extra)
    _print_summary(results, path, seconds)
    return 0


def _config_and_workdir(args):
    from invnorm_jax import experiment

    variant = _variant(args)
    config = experiment.load_config(args.config, variant)
    workdir = pathlib.Path(args.workdir) if args.workdir else pathlib.Path("runs") / f"{config['name']}-{variant}"
    return config, workdir, variant


def cmd_train(args) -> int:
    from invnorm_jax import experiment

    config, workdir, _ = _config_and_workdir(args)
    split = experiment.load_data(config)
    for method in args.method or config["methods"]:
        experiment.train_method(config, method, split, workdir / method, progress=not args.no_progress)
        print(f"trained {config['name']}/{method}: checkpoints in {workdir / method / 'checkpoints'}")
    return 0


def _evaluate(args, sweeps: bool) -> int:
    from invnorm_jax import experiment, report

    start = time.time()
    config, workdir, variant = _config_and_workdir(args)
    entry = experiment.run_task(config, workdir, methods=args.method, chips=args.chips, samples=args.samples,
                                train_models=False, sweeps=sweeps, progress=not args.no_progress)
    results = {"tasks": {config["name"]: entry}, "settings": _settings(args, variant, time.time() - start)}
    if sweeps:
        path = report.write_report(results, workdir)
    else:
        report.write_json(results, workdir / "evaluate.json")
        path = workdir / "evaluate.json"
    _print_summary(results, path, time.time() - start)
    return 0


def cmd_sweep(args) -> int:
    return _evaluate(args, sweeps=True)


def cmd_evaluate(args) -> int:
    return _evaluate(args, sweeps=False)


def cmd_ood(args) -> int:
    from invnorm_jax import experiment, ood_eval

    variant = _variant(args)
    config = experiment.load_config(args.config or args.task, variant)
    out = pathlib.Path(args.out) if args.out else _default_out(f"ood-{config['name']}")
    workdir = pathlib.Path(args.workdir) if args.workdir else out
    if not args.no_train:
        split = experiment.load_data(config)
        for method in args.method or config["methods"]:
            experiment.train_method(config, method, split, workdir / method, progress=not args.no_progress)
    results = ood_eval.run_ood(config, workdir, methods=args.method, samples=args.samples, chips=args.chips,
                               out_dir=out, progress=not args.no_progress)
    (out / "ood.md").write_text(ood_eval.markdown(results))
    print(ood_eval.markdown(results))
    print(f"\nwritten: {out / 'ood.json'}, {out / 'ood.md'}, {out / 'ood.png'}")
    return 0


def _common(p: argparse.ArgumentParser, *, config: bool = True) -> None:
    if config:
        p.add_argument("--config", required=True, help="config file (experiments/configs/X.py) or its name X")
    p.add_argument("--smoke", action="store_true", help="the config's smoke variant: a few steps, tiny eval")
    p.add_argument("--quick", action="store_true", help="the config's quick variant")
    p.add_argument("--method", nargs="+", choices=("nn", "spindrop", "spatial_spindrop", "proposed"),
                   help="methods to run (default: all four of the config)")
    p.add_argument("--workdir", help="folder of checkpoints and results (default runs/<name>-<variant>)")
    p.add_argument("--chips", type=int, help="simulated chips (default: the config's, 100)")
    p.add_argument("--samples", type=int, help="MC samples per chip and input (default: the config's)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="invnorm-jax",
        description="Inverted normalization with stochastic affine transformations: train Bayesian NNs and "
        "evaluate them on simulated faulty in-memory-computing chips.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="train the 4 methods on offline data, sweep faults over 100 chips, write a report")
    demo.add_argument("--quick", action="store_true", help="fewer steps, levels and samples (about 3 minutes)")
    demo.add_argument("--smoke", action="store_true", help="a few steps and 4 chips: checks the pipeline, not the method")
    demo.add_argument("--out", help="output folder (default runs/demo-<time>); rerunning resumes / reuses it")
    demo.add_argument("--tasks", nargs="+", default=list(DEMO_TASKS), choices=DEMO_TASKS, help="offline tasks")
    demo.add_argument("--methods", nargs="+", choices=("nn", "spindrop", "spatial_spindrop", "proposed"),
                      help="methods (default all four)")
    demo.add_argument("--chips", type=int, help="simulated chips per fault level (default 100)")
    demo.add_argument("--samples", type=int, help="MC samples T per chip and input (default: the task config's)")
    demo.add_argument("--no-ood", action="store_true", help="skip the out-of-distribution study on digits")
    demo.add_argument("--no-progress", action="store_true", help="no progress bars")
    demo.set_defaults(func=cmd_demo)

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
    src.add_argument("--config", help="config file or name")
    src.add_argument("--task", choices=DEMO_TASKS, help="an offline demo task")
    _common(ood, config=False)
    ood.add_argument("--out", help="output folder (default runs/ood-<name>-<time>)")
    ood.add_argument("--no-train", action="store_true", help="only load checkpoints from --workdir")
    ood.set_defaults(func=cmd_ood)
    return parser


def main(argv=None) -> int:
    from invnorm_jax.train import CheckpointError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (FileNotFoundError, ValueError, CheckpointError) as err:
        # Bad input is the user's to fix: say what, without a traceback.
        print(f"invnorm-jax {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
