"""``mtrl`` command line: train, eval, report, sweep, list, embed-tasks.

    mtrl train CONFIG [dotted.key=value ...] [--show-config]
    mtrl eval RUN_DIR [--episodes N] [--video [--tasks NAME ...]]
    mtrl report RUN_DIR... [--out DIR]
    mtrl report --transfer MT_RUNS... --single ST_RUNS... [--out DIR]
    mtrl single-task CONFIG --seeds N [key=value ...] [--out DIR]
    mtrl sweep CONFIG --seeds N [key=v1,v2 ...] [--address HEAD:6379] [--out DIR] [--storage PATH_OR_URI]
    mtrl list
    mtrl export RUN_DIR --out DIR
    mtrl convert-checkpoint PATH --trust

User mistakes (bad config keys, missing run directories, ...) print one line
``mtrl: error: ...`` and exit with code 2; nothing is written before they are caught.
A run that cannot go on (disk full, diverged, a broken environment) prints one line and
exits with 1; SIGINT / SIGTERM save a checkpoint and exit with 130 / 143.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from mtrl.errors import ConfigError, RunError, RunStopped, exit_status


def _success_table(result, title: str):
    table = Table(title=title)
    table.add_column("task")
    table.add_column("success", justify="right")
    table.add_column("return", justify="right")
    table.add_column("episodes", justify="right")
    for name, s, r, n in zip(result.task_names, result.success, result.returns, result.episodes):
        table.add_row(name, f"{s:.0%}", f"{r:.1f}", str(int(n)))
    table.add_row("[bold]mean", f"[bold]{result.success_mean:.0%}", f"{result.returns.mean():.1f}", "")
    return table


def cmd_train(args: argparse.Namespace, console: Console) -> None:
    from mtrl.config import load_config
    from mtrl.training.trainer import train

    cfg = load_config(args.config, args.overrides)
    if args.show_config:
        return show_config(cfg)
    result = train(cfg)
    console.print(_success_table(result.final_eval, f"{cfg.run.name}: evaluation at {result.env_steps:,} steps"))
    console.print(f"run directory: {result.run_dir}")


def show_config(cfg) -> None:
    """``mtrl train ... --show-config``: the config.yaml the run would record, each field's doc
    as a comment above it; sac.precision=auto resolved for this machine as the run resolves it.
    Nothing is trained or written."""
    from mtrl.config import documented_yaml
    from mtrl.hardware import resolve_precision
    from mtrl.training.trainer import resolve_device

    notes = {}
    if cfg.sac.precision == "auto":
        cfg.sac.precision, why = resolve_precision("auto", resolve_device(cfg.device))
        notes["sac.precision"] = f"(sac.precision=auto chose {cfg.sac.precision} here: {why})"
    print(documented_yaml(cfg, notes), end="")


def cmd_eval(args: argparse.Namespace, console: Console) -> None:
    from mtrl.inference.evaluate_run import evaluate_and_film

    run_dir = Path(args.run_dir)
    # Ctrl-C interrupts even where the parent started us with SIGINT ignored (a shell's
    # background job): Python then installs no KeyboardInterrupt handler of its own.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        run = evaluate_and_film(run_dir, args.episodes, args.device, args.video, args.tasks, progress=True)
    except KeyboardInterrupt:
        raise RunStopped(
            f"evaluation interrupted; nothing was written ({run_dir / 'eval.json'} is as it was)"
        ) from None
    finally:
        signal.signal(signal.SIGINT, previous)
    result = run.result
    console.print(_success_table(result, f"{args.run_dir}: {int(result.episodes[0])} episodes per task"))
    console.print(f"wrote {run.eval_json}")
    for v in run.videos:
        outcome = f"success at step {v.first_success}" if v.success else "no success"
        console.print(
            f"wrote {v.path} ({v.frames} frames, {v.steps} steps, {outcome})",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )


def cmd_report(args: argparse.Namespace, console: Console) -> None:
    from mtrl.analysis.report import summary_table, write_report

    if args.transfer or args.single:
        return report_transfer(args, console)
    if not args.run_dirs:
        raise ConfigError(
            "give the run directories to compare: mtrl report RUN_DIR... "
            "(or mtrl report --transfer MT_RUNS... --single ST_RUNS...)"
        )
    report = write_report(args.run_dirs, args.out, reps=args.reps, seed=args.seed, step=args.step)
    for warning in report.warnings:
        print(f"mtrl: warning: {warning}", file=sys.stderr)
    console.print(summary_table(report))
    console.print(f"wrote {', '.join(p.name for p in report.files)} to {report.out_dir}")


def report_transfer(args: argparse.Namespace, console: Console) -> None:
    """mtrl report --transfer MT_RUNS... --single ST_RUNS...: the negative-transfer map."""
    from mtrl.analysis.transfer import write_transfer_report

    if not (args.transfer and args.single) or args.run_dirs:
        raise ConfigError(
            "the transfer map takes both lists and nothing else: "
            "mtrl report --transfer MT_RUNS... --single ST_RUNS... [--out DIR]"
        )
    report = write_transfer_report(args.transfer, args.single, args.out, reps=args.reps, seed=args.seed)
    for warning in report.warnings:
        print(f"mtrl: warning: {warning}", file=sys.stderr)
    table = Table(title="transfer: multi-task - single-task final success")
    for column in ("method", "task", "transfer", "95% CI"):
        table.add_column(column)
    for r in report.rows:
        style = "red" if r["ci"][1] < 0 else ("green" if r["ci"][0] > 0 else None)
        table.add_row(
            r["method"], r["task"], f"{r['transfer']:+.3f}", f"[{r['ci'][0]:+.3f}, {r['ci'][1]:+.3f}]", style=style
        )
    console.print(table)
    console.print(f"wrote {', '.join(p.name for p in report.files)} to {report.out_dir}")


def cmd_sweep(args: argparse.Namespace, console: Console) -> None:
    from mtrl.sweeps.runner import run_sweep

    show_sweep(run_sweep(args.config, args.grid, args.seeds, args.out, **ray_options(args, console)), console)


def add_ray_options(p: argparse.ArgumentParser) -> None:
    """Where and with what a sweep's trials run (mtrl sweep, mtrl single-task)."""
    p.add_argument(
        "--address", default=None, help="an existing Ray cluster, e.g. HEAD:6379 (default: local Ray on this machine)"
    )
    p.add_argument("--cpus-per-trial", type=int, default=1, help="CPUs (and torch threads) per trial (default: 1)")
    p.add_argument("--gpus-per-trial", type=float, default=0.0, help="GPUs per trial, fractions allowed (default: 0)")
    p.add_argument(
        "--storage",
        default=None,
        metavar="PATH_OR_URI",
        help="where trials keep checkpoints: a folder every node sees, or a URI (s3://..., file://...) "
        "(default: the sweep directory; a rerun keeps the sweep's own)",
    )


def ray_options(args: argparse.Namespace, console: Console) -> dict:
    """The keyword arguments that ``add_ray_options`` parsed, and the console's echo of trial lines."""
    return {
        "address": args.address,
        "cpus_per_trial": args.cpus_per_trial,
        "gpus_per_trial": args.gpus_per_trial,
        "storage": args.storage,
        "echo": lambda line: console.print(line, markup=False, highlight=False),
    }


def cmd_single_task(args: argparse.Namespace, console: Console) -> None:
    from mtrl.sweeps.single_task import run_single_task

    show_sweep(
        run_single_task(args.config, args.seeds, args.overrides, args.out, **ray_options(args, console)), console
    )


def show_sweep(result, console: Console) -> None:
    """The trials' table, failures and the closing report of a sweep."""
    from rich.markup import escape

    from mtrl.analysis.report import summary_table
    from mtrl.sweeps.runner import MANIFEST, plural

    table = Table(title=f"sweep: {plural(len(result.trials), 'trial')} in {result.sweep_dir}")
    table.add_column("trial", overflow="fold")
    for column in ("seed", "state", "final success", "steps", "time"):
        table.add_column(column, justify="left" if column == "state" else "right")
    for t in result.trials:
        table.add_row(
            escape(t.name),
            str(t.seed),
            t.state,
            "" if t.final_success_mean is None else f"{t.final_success_mean:.0%}",
            "" if t.env_steps is None else f"{t.env_steps:,}",
            "" if t.seconds is None else f"{t.seconds:.0f} s",
        )
    console.print(table)
    for t in result.failed:
        console.print(f"failed: {t.label}: {t.error}", markup=False, highlight=False)
    if result.report is not None:
        for warning in result.report.warnings:
            print(f"mtrl: warning: {warning}", file=sys.stderr)
        console.print(summary_table(result.report))
        console.print(f"wrote the report to {result.report.out_dir}")
    else:
        console.print(f"mtrl: {result.report_note}", markup=False, highlight=False)
    if result.failed:
        raise RunError(
            f"{len(result.failed)} of {plural(len(result.trials), 'trial')} failed (errors in "
            f"{result.sweep_dir / MANIFEST}, "
            "tracebacks in the .log beside each run directory); rerun the same command to retry them"
        )


def cmd_list(args: argparse.Namespace, console: Console) -> None:
    from rich.markup import escape

    from mtrl import registry
    from mtrl.config import available_configs

    for kind in registry.KINDS:
        table = Table(title=f"{kind}s")
        table.add_column("name")
        table.add_column("what it is")
        for entry in registry.names(kind):
            missing = registry.unmet_requirement(entry)  # e.g. franka_kitchen without the kitchen extra
            table.add_row(
                escape(entry.name), escape(entry.summary + (f" ({missing})" if missing else ""))
            )  # [..] is text, not markup
        for name, why in registry.broken().items() if kind == "suite" else ():
            table.add_row(escape(name), f"[red]broken: {escape(why)}")
        console.print(table)
    console.print("configs: " + ", ".join(available_configs()))


def cmd_embed_tasks(args: argparse.Namespace, console: Console) -> None:
    from mtrl import registry
    from mtrl.config import build_dataclass, parse_overrides
    from mtrl.networks.task_embeddings import compute_embeddings, write_embeddings

    entry = registry.get("suite", args.suite)
    suite = entry.target(build_dataclass(entry.config_cls, parse_overrides(args.options), "env."))
    out = Path(args.out) if args.out else suite.embedding_file
    if out is None:
        raise ConfigError(f"suite '{args.suite}' ships no embedding file; pass --out FILE")
    catalog = suite.embedding_catalog()
    vectors = compute_embeddings(list(catalog.values()))
    write_embeddings(out, args.suite, catalog, vectors)
    console.print(f"wrote {len(catalog)} task embeddings ({vectors.shape[1]}-d) to {out}")


def cmd_export(args: argparse.Namespace, console: Console) -> None:
    from mtrl.inference.export import export_policy

    checkpoint = int(args.checkpoint) if args.checkpoint and args.checkpoint.isdigit() else args.checkpoint
    weights = export_policy(Path(args.run_dir), Path(args.out), checkpoint)
    console.print(
        f"wrote {weights.parent}: {weights.name}, policy.json, config.yaml (load with mtrl.load)",
        markup=False,
        highlight=False,
    )


def cmd_convert_checkpoint(args: argparse.Namespace, console: Console) -> None:
    from mtrl.checkpoint import CheckpointError, convert_checkpoint

    path = Path(args.path)
    if not path.is_file():
        raise ConfigError(f"'{path}' is not a file; pass a checkpoint such as RUN_DIR/checkpoints/step_<N>.pt")
    if not args.trust:
        raise ConfigError(
            f"converting '{path}' unpickles it in full, which runs any code it holds; add --trust "
            "only for a checkpoint you made yourself or trust"
        )
    try:
        backup = convert_checkpoint(path)
    except CheckpointError as e:
        raise ConfigError(str(e)) from None
    except Exception as e:  # whatever a foreign pickle raises: one line, the file is unchanged
        raise ConfigError(
            f"cannot convert '{path}': {type(e).__name__}: {(str(e).splitlines() or [''])[0][:120]}"
        ) from None
    console.print(
        f"converted {path} (loads without running code); the original is kept as {backup}",
        markup=False,
        highlight=False,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mtrl", description="Multi-task RL on Meta-World and friends.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train", help="train an agent from a config")
    p.add_argument("config", help="a YAML path or a name from configs/ (see `mtrl list`)")
    p.add_argument("overrides", nargs="*", help="dotted.key=value, e.g. train.total_steps=20000 seed=3")
    p.add_argument(
        "--show-config",
        action="store_true",
        help="print the fully resolved config, each field's meaning as a comment, and exit without training",
    )
    p.set_defaults(func=cmd_train)
    p = sub.add_parser("eval", help="evaluate a run's latest checkpoint, write RUN_DIR/eval.json")
    p.add_argument("run_dir")
    p.add_argument(
        "--episodes", type=int, default=None, help="episodes per task (default: the run's train.final_eval_episodes)"
    )
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument(
        "--video", action="store_true", help="film one episode per task: RUN_DIR/videos/<task>.mp4 (video extra)"
    )
    p.add_argument("--tasks", nargs="+", metavar="NAME", default=None, help="with --video: only these tasks")
    p.set_defaults(func=cmd_eval)
    p = sub.add_parser("report", help="compare runs: IQM and mean with bootstrap CIs, plots (needs the report extra)")
    p.add_argument(
        "run_dirs", nargs="*", metavar="RUN_DIR", help="a run directory, or a folder holding runs (two levels deep)"
    )
    p.add_argument(
        "--transfer",
        nargs="+",
        metavar="MT_RUN",
        default=None,
        help="the negative-transfer map: multi-task runs, compared per task with --single's",
    )
    p.add_argument(
        "--single", nargs="+", metavar="ST_RUN", default=None, help="single-task runs (one task each), with --transfer"
    )
    p.add_argument("--out", default="report", help="output folder (default: ./report); other files in it are kept")
    p.add_argument("--reps", type=int, default=2000, help="bootstrap replications (default: 2000)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default: 0)")
    p.add_argument(
        "--step",
        type=int,
        default=None,
        help="score each run at its last evaluation up to this env step (default: its last one)",
    )
    p.set_defaults(func=cmd_report)
    p = sub.add_parser("sweep", help="a grid of overrides x seeds as Ray tasks, resumable (needs the ray extra)")
    p.add_argument("config", help="a YAML path or a name from configs/ (see `mtrl list`)")
    p.add_argument(
        "grid", nargs="*", metavar="key=v1,v2", help="dotted.key=value[,value...]: the grid is their cartesian product"
    )
    p.add_argument("--seeds", type=int, required=True, help="seeds 0..N-1 for every grid point")
    p.add_argument(
        "--out", default=None, help="the sweep directory (default: sweeps/<config>-<time>); rerun with it to resume"
    )
    add_ray_options(p)
    p.set_defaults(func=cmd_sweep)
    p = sub.add_parser(
        "single-task", help="single-task baselines of a multi-task config: one run per task x seed, as a sweep"
    )
    p.add_argument("config", help="a multi-task config: a YAML path or a name from configs/")
    p.add_argument("overrides", nargs="*", help="dotted.key=value applied to every run before the per-task split")
    p.add_argument("--seeds", type=int, required=True, help="seeds 0..N-1 for every task")
    p.add_argument(
        "--out",
        default=None,
        help="the sweep directory (default: sweeps/<config>-single-task-<time>); rerun with it to resume",
    )
    add_ray_options(p)
    p.set_defaults(func=cmd_single_task)
    p = sub.add_parser("embed-tasks", help="embed a suite's task descriptions (needs the embed extra)")
    p.add_argument("suite", help="a registered suite name")
    p.add_argument("options", nargs="*", help="suite options key=value, e.g. num_tasks=8")
    p.add_argument("--out", default=None, help="output JSON (default: the suite's shipped file)")
    p.set_defaults(func=cmd_embed_tasks)
    p = sub.add_parser("list", help="show registered suites, agents, schedulers and configs")
    p.set_defaults(func=cmd_list)
    p = sub.add_parser(
        "export", help="write a run's policy as safetensors weights + config, to share (mtrl.load reads it)"
    )
    p.add_argument("run_dir")
    p.add_argument("--out", required=True, help="a new or empty folder")
    p.add_argument(
        "--checkpoint", default=None, help="a step number or checkpoint file (default: the newest that verifies)"
    )
    p.set_defaults(func=cmd_export)
    p = sub.add_parser(
        "convert-checkpoint", help="rewrite a trusted checkpoint of an older mtrl so that it loads without running code"
    )
    p.add_argument("path", help="the checkpoint file, RUN_DIR/checkpoints/step_<N>.pt")
    p.add_argument("--trust", action="store_true", help="required: converting runs the code the file holds")
    p.set_defaults(func=cmd_convert_checkpoint)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if getattr(args, "func", None) is cmd_sweep:  # key=v1,v2 after --seeds N: argparse leaves them over
        args.grid += [a for a in extra if not a.startswith("-")]
        extra = [a for a in extra if a.startswith("-")]
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    console = Console()
    try:
        args.func(args, console)
    except (ConfigError, RunError) as e:  # RunStopped is a RunError
        return exit_status("mtrl", e)
    except KeyboardInterrupt:  # a second Ctrl-C, or one outside training's loop
        kept = (
            "; the checkpoints written so far are kept, resume with resume=true run.dir=..."
            if args.func is cmd_train
            else ""
        )
        print(f"mtrl: interrupted{kept}", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
