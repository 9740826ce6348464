"""``mtrl sweep``: a grid of config overrides x seeds, each trial an ordinary mtrl run
trained as a Ray task, on local Ray or on a cluster (``address``).

    result = run_sweep("toy-mtsac", ["sac.actor_lr=3e-4,1e-3"], seeds=3, out="sweeps/lr")

The sweep directory holds one run directory per trial, ``<grid point>/seed<s>/``, the
trial's log beside it (``<grid point>/seed<s>.log``: the trainer's messages, a failure's
traceback) and ``sweep.json``, the manifest: the command, the grid, the resolved base
config and every trial's overrides, seed, run directory and state (pending, running, done,
failed with its one-line error). Running the same sweep again on the same directory
resumes it: done trials are kept, every other one continues from its run's newest good
checkpoint (``resume=true``), or starts if it never wrote one. A different grid, seeds or
config on an existing sweep directory is refused. Every grid point's config is validated
before Ray starts or anything is written. Trials need not share the driver's disk:
checkpoints go to the sweep's storage (``--storage``, default the sweep directory) and the
small files come back in the Ray task's result (mtrl/sweeps/storage.py). Ray is imported
only here, inside functions, so
``import mtrl`` never needs it; a Ray session already initialised in the process (a
notebook, the tests) is used as is and left running.
"""

from __future__ import annotations

import dataclasses
import fcntl
import itertools
import json
import logging
import os
import re
import shlex
import shutil
import tempfile
import time
import traceback
import uuid
from collections.abc import Callable
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from mtrl.atomic_write import atomic_write
from mtrl.errors import ConfigError, RunStopped, install_hint, one_line
from mtrl.sweeps.leftovers import PREFIX as LEFTOVER_PREFIX
from mtrl.sweeps.leftovers import clean_leftovers, mark_driver
from mtrl.sweeps.storage import Storage, claim, fetch_small, parse_storage, workplace, write_files
from mtrl.training.logger import read_metrics

MANIFEST = "sweep.json"
LOCK = ".sweep.lock"
STATES = ("pending", "running", "done", "failed")
SET_BY_SWEEP = ("seed", "run.dir", "resume", "train.progress", "train.threads")  # per-trial keys the sweep owns
STOP_GRACE_S = 120  # after Ctrl-C / SIGTERM: how long running trials get to save a checkpoint


@dataclass
class Trial:
    """One grid point x seed; ``run_dir`` is relative to the sweep directory."""

    name: str
    overrides: list[str]
    seed: int
    run_dir: str
    state: str = "pending"
    error: str | None = None
    attempts: int = 0
    seconds: float | None = None  # the last attempt's wall time
    env_steps: int | None = None
    final_success_mean: float | None = None
    checkpoints: str | None = None  # where its checkpoints are: a storage path or URI, or a node's folder

    @property
    def label(self) -> str:
        return f"{self.name} seed {self.seed}"


@dataclass
class SweepResult:
    sweep_dir: Path
    trials: list[Trial]
    report: Any = None  # mtrl.analysis.report.Report, when the report extra is installed
    report_note: str | None = None  # why there is no report

    @property
    def failed(self) -> list[Trial]:
        return [t for t in self.trials if t.state == "failed"]


# --- the grid -----------------------------------------------------------------------------


def split_values(raw: str) -> list[str]:
    """``"1e-3,[16,16],'a,b'"`` -> ``["1e-3", "[16,16]", "'a,b'"]``: commas inside brackets
    or quotes belong to the value."""
    values, depth, quote, start = [], 0, None, 0
    for i, ch in enumerate(raw):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "[{(":
            depth += 1
        elif ch in "]})":
            depth -= 1
        elif ch == "," and depth == 0:
            values.append(raw[start:i])
            start = i + 1
    values.append(raw[start:])
    return values


def parse_grid(items: list[str]) -> dict[str, list[str]]:
    """``["sac.actor_lr=1e-3,3e-4", "train.total_steps=400"]`` -> ``{key: [value, ...]}``
    (one value: a plain override every trial gets)."""
    grid: dict[str, list[str]] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key or not re.fullmatch(r"[A-Za-z_][\w.]*", key):
            raise ConfigError(f"sweep argument '{item}' is not of the form dotted.key=value[,value...]")
        if key in SET_BY_SWEEP:
            raise ConfigError(
                f"'{key}' is set by mtrl sweep for every trial (seeds 0..N-1 by --seeds N, run "
                "directories under --out DIR, torch threads by --cpus-per-trial); leave it out of the grid"
            )
        if key in grid:
            raise ConfigError(f"sweep argument '{item}': '{key}' is given twice; list all its values in one key=v1,v2")
        values = split_values(raw)
        if len(values) > 1 and any(v.strip() == "" for v in values):
            raise ConfigError(f"sweep argument '{item}' has an empty value; write key=v1,v2 without empty entries")
        if len(set(values)) < len(values):
            raise ConfigError(f"sweep argument '{item}' repeats a value")
        grid[key] = values
    return grid


def point_name(point: dict[str, str], grid: dict[str, list[str]]) -> str:
    """A folder name from the keys that vary: ``sac.actor_lr=0.001,agent.hidden_sizes=16-16``."""

    def safe(value: str) -> str:
        value = re.sub(r"[\[\]{}()'\" ]", "", value).strip("/")
        return re.sub(r"[^A-Za-z0-9._+=-]+", "-", value) or "empty"

    parts = [f"{k}={safe(v)}" for k, v in point.items() if len(grid[k]) > 1]
    return ",".join(parts)[:120] or "base"


def make_trials(grid: dict[str, list[str]], seeds: int) -> list[Trial]:
    """The cartesian product of the grid's values, times seeds 0..seeds-1."""
    trials, names = [], set()
    for values in itertools.product(*grid.values()):
        point = dict(zip(grid, values))
        name = point_name(point, grid)
        if name in names:  # two values that read alike once made folder-safe
            name = f"{name}-{len(names)}"
        names.add(name)
        for seed in range(seeds):
            trials.append(Trial(name, [f"{k}={v}" for k, v in point.items()], seed, f"{name}/seed{seed}"))
    return trials


def trial_config(config: str, trial: Trial, sweep_dir: Path):
    from mtrl.config import load_config

    return load_config(
        config, trial.overrides + [f"seed={trial.seed}", f"run.dir={sweep_dir / trial.run_dir}", "train.progress=false"]
    )


def flat_config(cfg: Any) -> dict[str, Any]:
    """A resolved config as ``{dotted.key: value}`` in plain JSON types, without the keys
    every trial sets itself."""
    from mtrl.analysis.report import flatten_config
    from mtrl.config import to_dict

    flat = json.loads(json.dumps(flatten_config(to_dict(cfg)), default=str))
    return {k: v for k, v in flat.items() if k not in SET_BY_SWEEP}


# --- the manifest -------------------------------------------------------------------------


def read_manifest(sweep_dir: Path) -> dict | None:
    """The sweep directory's manifest, its trials as :class:`Trial`; None when there is none.
    One-line ConfigError for a file that is not one (of the kinds :func:`write_manifest` writes)."""
    from mtrl.config import build_dataclass

    path = sweep_dir / MANIFEST
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        why = _manifest_problem(data)
        if why is None:
            data["trials"] = [build_dataclass(Trial, t, f"trials[{i}].") for i, t in enumerate(data["trials"])]
            why = next((f"trial state {t.state!r}" for t in data["trials"] if t.state not in STATES), None)
    except (ValueError, ConfigError) as e:  # JSON errors (and UnicodeDecodeError) are ValueErrors
        why = f"{type(e).__name__}: {(str(e).splitlines() or [''])[0][:120]}"
    if why is not None:
        raise ConfigError(f"'{path}' is not an mtrl sweep manifest ({why}); choose another --out")
    return data


def _manifest_problem(data: Any) -> str | None:
    """What is wrong with a manifest's layout, or None: ``sweep`` (grid, seeds, base_config,
    points) and ``trials`` of the kinds :func:`write_manifest` writes."""

    def names_to_lists(value: Any) -> bool:
        return isinstance(value, dict) and all(
            isinstance(v, list) and all(isinstance(x, str) for x in v) for v in value.values()
        )

    if (
        not isinstance(data, dict)
        or not isinstance(data.get("sweep"), dict)
        or not isinstance(data.get("trials"), list)
    ):
        return "no 'sweep' mapping and 'trials' list"
    sweep = data["sweep"]
    if not names_to_lists(sweep.get("grid")) or ("points" in sweep and not names_to_lists(sweep["points"])):
        return "its grid is not a mapping of keys to lists of values"
    if type(sweep.get("seeds")) is not int or not isinstance(sweep.get("base_config"), dict):
        return "no seed count or base config"
    if not all(isinstance(t, dict) for t in data["trials"]):
        return "a trial is not a mapping"
    return None


def same_sweep(old: dict, sweep: dict, sweep_dir: Path) -> None:
    """Refuse, in one line, to resume a sweep directory with another grid, seeds or config."""
    again = f"rerun its own command to resume it ({old.get('command', '?')}) or choose another --out"
    if (
        list(old["sweep"]["grid"].items()) != list(sweep["grid"].items())
        or old["sweep"]["seeds"] != sweep["seeds"]
        or old["sweep"].get("points") != sweep.get("points")
    ):
        raise ConfigError(f"--out '{sweep_dir}' holds a sweep with another grid or --seeds; {again}")
    was, now = old["sweep"]["base_config"], sweep["base_config"]
    changed = sorted(k for k in set(was) | set(now) if was.get(k, "<unset>") != now.get(k, "<unset>"))
    if changed:
        k = changed[0]
        more = f" and {len(changed) - 1} more key(s)" if len(changed) > 1 else ""
        raise ConfigError(
            f"--out '{sweep_dir}' holds a sweep of another config ({k}: {was.get(k, '<unset>')!r} -> "
            f"{now.get(k, '<unset>')!r}{more}); {again}"
        )


def write_manifest(sweep_dir: Path, command: str, sweep: dict, trials: list[Trial]) -> None:
    data = {
        "version": 1,
        "command": command,
        "updated": datetime.now().isoformat(timespec="seconds"),
        "sweep": sweep,
        "trials": [dataclasses.asdict(t) for t in trials],
    }
    atomic_write(sweep_dir / MANIFEST, json.dumps(data, indent=1) + "\n")


def lock(sweep_dir: Path):
    """Hold the sweep directory for this process (released when it exits, even by SIGKILL)."""
    handle = open(sweep_dir / LOCK, "a")  # noqa: SIM115 (held open until the sweep ends)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise ConfigError(f"another mtrl sweep is running on '{sweep_dir}'; wait for it or stop it first") from None
    return handle


# --- one trial, inside a Ray worker ---------------------------------------------------------


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def finished_run(run_dir: Path, total_steps: int) -> dict | None:
    """The final evaluation's record of a run that finished training (a checkpoint at the
    last step and the final evaluation logged): a sweep killed before it could mark the
    trial done. Resuming such a run would evaluate it once more."""
    from mtrl.checkpoint import checkpoint_step, list_checkpoints

    checkpoints = list_checkpoints(run_dir)
    metrics = run_dir / "metrics.jsonl"
    if not checkpoints or checkpoint_step(checkpoints[-1]) < total_steps or not metrics.is_file():
        return None
    evals = [r for r in read_metrics(run_dir) if "eval/success_mean" in r and r["step"] >= total_steps]
    return evals[-1] if evals else None  # mid-run evaluations come before


def log_name(trial: Trial) -> str:
    """The trial's log, relative to the sweep directory: beside its run directory."""
    return f"{trial.name}/seed{trial.seed}.log"


def run_trial(cfg: Any, run_rel: str, log_rel: str, threads: int, cwd: str, storage: Storage) -> dict:
    """Train one trial (the Ray task's body) where :func:`workplace` puts it on this node:
    resume its run if the storage holds one, else start it. Never raises for a failed run:
    returns its state and one-line error, where its checkpoints are and, when the driver
    cannot read them where they are, its small files; the trainer's messages and any
    traceback go to its log."""
    import torch

    if os.path.isdir(cwd):  # relative paths in the config mean what they meant to the driver
        os.chdir(cwd)
    torch.set_num_threads(threads)
    start = time.perf_counter()
    try:
        place = workplace(storage)
        place.pull([run_rel, log_rel])
    except Exception as e:  # noqa: BLE001 (storage unreachable from this node)
        return {"state": "failed", "error": one_line(e)}
    cfg = dataclasses.replace(
        cfg,
        run=dataclasses.replace(cfg.run, dir=str(place.root / run_rel)),
        train=dataclasses.replace(cfg.train, threads=threads),
    )
    out = train_trial(cfg, place.root / log_rel, lambda _: place.push(run_rel, log_rel))
    try:
        place.push(run_rel, log_rel)
        stored = True
    except Exception as e:  # noqa: BLE001 (the node keeps its copy; the storage has the last pushed checkpoint)
        stored = False
        out = {"state": "failed", "error": f"could not copy the run to --storage {storage.location} ({one_line(e)})"}
    out["checkpoints"] = place.checkpoints_at(run_rel)
    if place.returns_files:
        out["files"] = place.read_small_files(run_rel, log_rel)
    if stored:
        place.tidy([run_rel, log_rel])
    if not out.pop("finished_before", False):  # the driver says "it had finished before" instead of a time
        out["seconds"] = round(time.perf_counter() - start, 1)
    return out


def train_trial(cfg: Any, log_path: Path, push: Callable[[Path], None]) -> dict:
    """Train (or resume, or find finished) the run in ``cfg.run.dir``, its messages to
    ``log_path``; ``push`` after each checkpoint. Its state and one-line error."""
    from mtrl.checkpoint import list_checkpoints
    from mtrl.training.trainer import train

    run_dir = Path(cfg.run.dir)
    resume = (run_dir / "config.yaml").is_file() or bool(list_checkpoints(run_dir))
    cfg = dataclasses.replace(cfg, resume=resume)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    final = finished_run(run_dir, cfg.train.total_steps) if resume else None
    if final is not None:
        with open(log_path, "a") as log:
            log.write(
                f"--- {datetime.now().isoformat(timespec='seconds')} already finished: final evaluation at "
                f"step {final['step']:,}; marked done\n"
            )
        return {
            "state": "done",
            "env_steps": final["step"],
            "final_success_mean": final["eval/success_mean"],
            "finished_before": True,
        }

    def push_or_say(path: Path) -> None:  # a storage hiccup costs this copy, not the run: the next one retries
        try:
            push(path)
        except Exception as e:  # noqa: BLE001
            print(
                f"--- could not copy {path.name} to the storage ({one_line(e)}); retrying at the next checkpoint",
                flush=True,
            )

    with open(log_path, "a", buffering=1) as log, redirect_stdout(log), redirect_stderr(log):
        print(
            f"--- {datetime.now().isoformat(timespec='seconds')} {'resuming' if resume else 'starting'} "
            f"on {os.uname().nodename} pid {os.getpid()} in {run_dir}",
            flush=True,
        )
        try:
            result = train(cfg, on_checkpoint=push_or_say)
            out = {
                "state": "done",
                "env_steps": result.env_steps,
                "final_success_mean": float(result.final_eval.success_mean) if result.final_eval else None,
            }
        except RunStopped as e:
            out = {"state": "pending", "error": None, "stopped": str(e)}
        except Exception as e:  # noqa: BLE001 (a trial's failure is data for the manifest, not the sweep's end)
            traceback.print_exc()
            out = {"state": "failed", "error": one_line(e)}
        print(f"--- {out['state']}: {out.get('error') or out.get('stopped') or ''}".rstrip(": "), flush=True)
    return out


# --- the sweep ------------------------------------------------------------------------------


def machine_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def import_ray():
    try:
        import ray
    except ImportError:
        raise ConfigError(f"mtrl sweep needs the ray extra: {install_hint('ray')}") from None
    return ray


def start_ray(ray, address: str | None, sweep_dir: Path) -> tuple[bool, str | None]:
    """Connect to ``address``, or start local Ray on this machine's CPUs; quiet, with its own
    temporary folder, marked with this process (for :mod:`mtrl.sweeps.leftovers`). Returns
    (we started it, the folder to remove after shutdown)."""
    if ray.is_initialized():
        return False, None
    quiet = {"log_to_driver": False, "logging_level": logging.ERROR}
    if address:
        try:
            ray.init(address=address, **quiet)
        except Exception as e:  # noqa: BLE001 (Ray raises several kinds for an unreachable cluster)
            raise ConfigError(
                f"could not connect to the Ray cluster at '{address}' ({one_line(e)}); "
                "start it with `ray start --head --port=6379` on the head node"
            ) from None
        return True, None
    temp = tempfile.mkdtemp(prefix=LEFTOVER_PREFIX)  # short: Ray's socket paths must fit in 107 bytes
    mark_driver(temp, sweep_dir)
    ray.init(num_cpus=machine_cpus(), include_dashboard=False, _temp_dir=temp, **quiet)
    return True, temp


def capacity(ray, cpus: int, gpus: float) -> int:
    """How many trials the cluster can run at once now (it may grow)."""
    total = ray.cluster_resources()
    fits = int(total.get("CPU", 0) // cpus)
    if gpus:
        fits = min(fits, int(total.get("GPU", 0) // gpus))
    return fits


@dataclass
class SweepPlan:
    """A validated sweep, nothing written yet: its trials (kept ones from the manifest), their
    configs, the manifest's ``sweep`` entry, the storage and the command that resumes it."""

    out: str | Path
    sweep_dir: Path
    trials: list[Trial]
    configs: dict
    sweep: dict
    old: dict | None  # the manifest of the sweep being resumed
    store: Storage
    command: str


def run_sweep(
    config: str,
    grid_args: list[str],
    seeds: int,
    out: str | Path | None = None,
    address: str | None = None,
    cpus_per_trial: int = 1,
    gpus_per_trial: float = 0.0,
    echo: Callable[[str], None] = print,
    points: dict[str, list[str]] | None = None,
    command: list[str] | None = None,
    storage: str | None = None,
) -> SweepResult:
    """Run (or resume) the sweep; see the module docstring. Bad input raises
    :class:`ConfigError` before Ray starts or anything is written."""
    # 1. Validate everything: the grid, every trial's config, the sweep directory.
    check_counts(seeds, cpus_per_trial, gpus_per_trial)
    plan = plan_sweep(config, grid_args, seeds, out, gpus_per_trial, points, command, storage)
    ray = import_ray()
    todo = [t for t in plan.trials if t.state != "done"]
    if not todo:
        echo(f"all {plural(len(plan.trials), 'trial')} of {plan.sweep_dir} are done")
        return SweepResult(plan.sweep_dir, plan.trials, *make_report(plan.sweep_dir, plan.trials))
    # 2. Start Ray, check the trials fit, then write.
    run_under_ray(ray, plan, todo, address, cpus_per_trial, gpus_per_trial, echo)
    return SweepResult(plan.sweep_dir, plan.trials, *make_report(plan.sweep_dir, plan.trials))


def check_counts(seeds: int, cpus_per_trial: int, gpus_per_trial: float) -> None:
    """One-line ConfigError for a seed count or per-trial resources out of range."""
    if seeds < 1:
        raise ConfigError(f"--seeds must be at least 1, got {seeds}")
    if cpus_per_trial < 1:
        raise ConfigError(f"--cpus-per-trial must be at least 1, got {cpus_per_trial}")
    if gpus_per_trial < 0:
        raise ConfigError(f"--gpus-per-trial must be at least 0, got {gpus_per_trial}")


def plan_sweep(
    config: str,
    grid_args: list[str],
    seeds: int,
    out: str | Path | None,
    gpus_per_trial: float,
    points: dict[str, list[str]] | None,
    command: list[str] | None,
    storage: str | None,
) -> SweepPlan:
    """Validate the grid, every trial's config and the sweep directory (resuming its manifest);
    the sweep to run. Writes nothing."""
    from mtrl.config import load_config

    grid = parse_grid(grid_args)
    base = load_config(config)
    if out is None:
        out = Path("sweeps") / f"{base.run.name}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    sweep_dir = Path(out).absolute()
    trials, configs = plan_trials(config, grid, seeds, points, sweep_dir, gpus_per_trial)
    sweep = {
        "config": config,
        "grid": grid,
        "seeds": seeds,
        "base_config": flat_config(base),
        **({"points": points} if points is not None else {}),
    }
    location = parse_storage(storage) if storage is not None else None
    old, trials, location = resume_manifest(sweep_dir, out, sweep, trials, location)
    sweep["storage"] = location
    sweep["id"] = old["sweep"].get("id", uuid.uuid4().hex[:12]) if old is not None else uuid.uuid4().hex[:12]
    store = Storage(location or str(sweep_dir), sweep["id"], default=location is None)
    command = shlex.join(
        [
            *(command or ["mtrl", "sweep", config, "--seeds", str(seeds), *grid_args]),
            "--out",
            str(out),
            *(["--storage", location] if location else []),
        ]
    )
    return SweepPlan(out, sweep_dir, trials, configs, sweep, old, store, command)


def plan_trials(
    config: str,
    grid: dict[str, list[str]],
    seeds: int,
    points: dict[str, list[str]] | None,
    sweep_dir: Path,
    gpus_per_trial: float,
) -> tuple[list[Trial], dict]:
    """The trials and each one's loaded (so validated) config, keyed by (name, seed)."""
    trials = make_trials(grid, seeds)
    if points is not None:  # named override lists instead of a product (mtrl single-task: one per task)
        trials = [
            Trial(name, [*extra, *t.overrides], t.seed, f"{name}/seed{t.seed}")
            for name, extra in points.items()
            for t in trials
        ]
    configs = {(t.name, t.seed): trial_config(config, t, sweep_dir) for t in trials}
    if not gpus_per_trial and any(c.device == "cuda" for c in configs.values()):
        raise ConfigError(
            "device=cuda needs GPUs for the trials: pass --gpus-per-trial G (e.g. 1, or 0.5 to share one)"
        )
    return trials, configs


def resume_manifest(
    sweep_dir: Path, out: str | Path, sweep: dict, trials: list[Trial], location: str | None
) -> tuple[dict | None, list[Trial], str | None]:
    """The sweep directory's manifest (None for a new sweep), the trials with the states it
    recorded, and the storage to use; ConfigError for a directory that cannot hold this sweep."""
    if sweep_dir.exists() and not sweep_dir.is_dir():
        raise ConfigError(f"--out '{out}' is a file; choose a folder")
    old = read_manifest(sweep_dir)
    if old is not None:
        same_sweep(old, sweep, sweep_dir)
        location = same_storage(old["sweep"].get("storage"), location, sweep_dir)
        done = {(t.name, t.seed): t for t in old["trials"]}
        trials = [
            dataclasses.replace(done.get((t.name, t.seed), t), overrides=t.overrides, run_dir=t.run_dir) for t in trials
        ]
    elif sweep_dir.is_dir() and any(sweep_dir.iterdir()):
        raise ConfigError(f"--out '{out}' already holds files but no {MANIFEST}; choose a new or empty folder")
    return old, trials, location


def run_under_ray(
    ray,
    plan: SweepPlan,
    todo: list[Trial],
    address: str | None,
    cpus_per_trial: int,
    gpus_per_trial: float,
    echo: Callable[[str], None],
) -> None:
    """Start (or join) Ray, check a trial fits, claim and lock the sweep directory, write the
    manifest and run ``todo``; Ray (when started here) and its temporary folder go afterwards."""
    clean_leftovers(echo)  # of drivers killed by SIGKILL, which could not clean up
    started, temp = start_ray(ray, address, plan.sweep_dir)
    handle = None
    try:
        total = ray.cluster_resources()
        if capacity(ray, cpus_per_trial, gpus_per_trial) < 1:
            raise ConfigError(
                f"a trial asks for {cpus_per_trial} CPU(s) and {gpus_per_trial:g} GPU(s), but the Ray cluster "
                f"has {total.get('CPU', 0):g} CPU(s) and {total.get('GPU', 0):g} GPU(s); "
                "lower --cpus-per-trial / --gpus-per-trial"
            )
        claim(plan.store, plan.sweep_dir)
        plan.sweep_dir.mkdir(parents=True, exist_ok=True)
        handle = lock(plan.sweep_dir)
        echo(start_message(plan, len(todo)))

        def save() -> None:
            write_manifest(plan.sweep_dir, plan.command, plan.sweep, plan.trials)

        save()
        run_all(ray, todo, plan.configs, plan.sweep_dir, plan.store, cpus_per_trial, gpus_per_trial, save, echo)
    finally:
        if handle is not None:
            handle.close()
        if started:
            ray.shutdown()
        if temp:
            shutil.rmtree(temp, ignore_errors=True)


def start_message(plan: SweepPlan, todo: int) -> str:
    """What the sweep says as it starts: how many trials, or what resuming it keeps and reruns."""
    if plan.old is not None:
        counts = {s: sum(t.state == s for t in plan.trials) for s in STATES}
        return (
            f"resuming {plan.sweep_dir}: {counts['done']} done; {todo} to run "
            f"({counts['running']} interrupted, {counts['failed']} failed before)"
        )
    return (
        f"sweep of {plural(len(plan.trials), 'trial')} in {plan.sweep_dir} (rerun the same command with "
        f"--out {plan.out} to resume it)"
    )


def run_all(
    ray,
    todo: list[Trial],
    configs: dict,
    sweep_dir: Path,
    storage: Storage,
    cpus: int,
    gpus: float,
    save: Callable[[], None],
    echo: Callable[[str], None],
) -> None:
    """Hand trials to Ray as capacity allows, record each result as it comes (its small files
    under ``sweep_dir``). SIGINT/SIGTERM: the running trials save a checkpoint and stop, the
    manifest says where they were."""
    from mtrl.training.stop_signals import StopSignals

    task = ray.remote(run_trial)
    options = task_options(cpus, gpus)
    queue, running, finished = list(todo), {}, 0

    def record(ref, trial: Trial) -> None:
        nonlocal finished
        result = collect_result(ray, ref, trial, storage, sweep_dir)
        save()
        finished += 1
        say_result(trial, result, f"[{finished}/{len(todo)}]", echo)

    with StopSignals() as stop:
        try:
            while queue or running:
                while queue and len(running) < max(1, capacity(ray, cpus, gpus)):
                    trial = queue.pop(0)
                    trial.state, trial.error, trial.attempts = "running", None, trial.attempts + 1
                    save()
                    ref = task.options(name=f"mtrl {trial.label}", **options).remote(
                        configs[(trial.name, trial.seed)], trial.run_dir, log_name(trial), cpus, os.getcwd(), storage
                    )
                    running[ref] = trial
                ready, _ = ray.wait(list(running), num_returns=1, timeout=0.5)
                for ref in ready:
                    record(ref, running.pop(ref))
                if stop.received:
                    stop_running(ray, running, record, stop.received, sweep_dir)
        except KeyboardInterrupt:  # a second Ctrl-C: Ray's shutdown ends the trials at their last checkpoint
            raise RunStopped(
                f"sweep interrupted; rerun the same command to resume the trials from their last "
                f"checkpoints ({sweep_dir / MANIFEST})"
            ) from None


def task_options(cpus: int, gpus: float) -> dict:
    """The Ray task options of one trial: its CPUs and GPUs, no retries, its threads."""
    env_vars = {"OMP_NUM_THREADS": str(cpus), "MKL_NUM_THREADS": str(cpus)}
    if not gpus:  # Ray (>= 2.48) leaves CUDA_VISIBLE_DEVICES alone for a task without GPUs
        env_vars["CUDA_VISIBLE_DEVICES"] = ""
    return {"num_cpus": cpus, "num_gpus": gpus, "max_retries": 0, "runtime_env": {"env_vars": env_vars}}


def collect_result(ray, ref, trial: Trial, storage: Storage, sweep_dir: Path) -> dict:
    """A finished Ray task's result, recorded on ``trial`` (its small files under ``sweep_dir``):
    a cancelled task is pending again, a crashed one failed."""
    try:
        result = ray.get(ref)
    except ray.exceptions.TaskCancelledError:
        result = {"state": "pending", "error": None}
    except Exception as e:  # noqa: BLE001 (a crashed worker, a lost node)
        result = {"state": "failed", "error": one_line(e)}
        fetch_files(storage, sweep_dir, trial)
    if "files" in result:
        write_files(sweep_dir, trial.run_dir, result["files"])
    for key in ("state", "error", "seconds", "env_steps", "final_success_mean", "checkpoints"):
        if key in result:
            setattr(trial, key, result[key])
    return result


def say_result(trial: Trial, result: dict, count: str, echo: Callable[[str], None]) -> None:
    """One line for a trial that finished or failed (``count``: ``[i/n]``); none for one stopped."""
    if trial.state == "done":
        success = f", final success {trial.final_success_mean:.0%}" if trial.final_success_mean is not None else ""
        took = f" in {trial.seconds:.0f} s" if "seconds" in result else " (it had finished before)"
        echo(f"{count} {trial.label}: done{took}{success}")
    elif trial.state == "failed":
        echo(f"{count} {trial.label}: FAILED: {trial.error}")


def stop_running(ray, running: dict, record: Callable, signal: str, sweep_dir: Path) -> None:
    """After SIGINT/SIGTERM: ask the running trials to checkpoint and stop, record those that do
    within :data:`STOP_GRACE_S`, then raise RunStopped."""
    for ref in running:
        ray.cancel(ref)  # a SIGINT in the worker: the trainer checkpoints and stops
    if running:
        for ref in ray.wait(list(running), num_returns=len(running), timeout=STOP_GRACE_S)[0]:
            record(ref, running.pop(ref))
    raise RunStopped(
        f"sweep stopped by {signal}; running trials saved a checkpoint; "
        f"rerun the same command to resume ({sweep_dir / MANIFEST})"
    )


def fetch_files(storage: Storage, sweep_dir: Path, trial: Trial) -> None:
    """A trial whose worker died returned nothing: bring what it last copied to the storage
    (its metrics up to its last checkpoint, its log) under ``sweep_dir``, where the driver
    can read that storage."""
    if storage.default:
        return
    try:
        files = fetch_small(storage, [trial.run_dir, log_name(trial)])
        trial.checkpoints = storage.where(f"{trial.run_dir}/checkpoints")
    except Exception:  # noqa: BLE001 (the storage is not reachable from the driver: the manifest still says what failed)
        return
    write_files(sweep_dir, trial.run_dir, files)


def same_storage(recorded: str | None, requested: str | None, sweep_dir: Path) -> str | None:
    """The storage a resumed sweep keeps: the one it was started with."""
    if requested is None or requested == recorded:
        return recorded
    where = f"--storage {recorded}" if recorded else "no --storage (its checkpoints are under --out)"
    raise ConfigError(f"--out '{sweep_dir}' holds a sweep started with {where}; rerun it so, or choose another --out")


def make_report(sweep_dir: Path, trials: list[Trial]) -> tuple[Any, str | None]:
    """``mtrl report`` over the sweep directory (to ``sweep_dir/report``), when the report
    extra is installed; otherwise, or with no evaluated run, why not."""
    from mtrl.analysis.report import needs_report_extra, require_report_extra, write_report

    try:
        require_report_extra()
    except ConfigError:
        return None, f"{needs_report_extra()}, then: mtrl report {sweep_dir} --out {sweep_dir / 'report'}"
    if not any(t.state == "done" for t in trials):
        return None, "no trial finished; no report"
    try:
        return write_report([sweep_dir], out_dir=sweep_dir / "report"), None
    except ConfigError as e:
        return None, f"no report: {e}"
