"""``mtrl report``: aggregate run directories into tables and plots, with rliable statistics.

A run directory holds ``config.yaml`` and ``metrics.jsonl``. Runs whose configs agree once
the keys that do not define a method are dropped (``seed``, ``run``, ``resume``, ``device``,
``train.progress``, ``train.threads``) are seeds of one method. For each method the per-task success at every
run's last evaluation ("final") and its best one by mean success ("best") form a
(runs x tasks) matrix; rliable gives the IQM and mean with 95 % stratified-bootstrap
confidence intervals and the probability of improvement between methods. A run's
``eval.json`` (``mtrl eval``) counts as an evaluation at its checkpoint's step (training's own
evaluation at the same step wins), and of runs with the same method and seed only the one
evaluated furthest counts (a stopped run and its restart are one seed, not two).

    report = write_report(["runs/"], "report")   # summary.md/.csv/.json, per_task.csv, PNGs
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shlex
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from mtrl.atomic_write import atomic_write
from mtrl.errors import ConfigError, install_hint
from mtrl.training.logger import read_metrics

NON_METHOD_KEYS = ("seed", "run", "resume", "device", "train.progress", "train.threads")


def needs_report_extra() -> str:
    """What to say when rliable or matplotlib is missing."""
    return f"mtrl report needs the report extra: {install_hint('report')}"


SUCCESS = "eval/success/"
MAX_ENCODERS = 1024  # attention/<task>/<i> beyond this is not a model's (a damaged or foreign metrics.jsonl)


def require_report_extra():
    """rliable's (library, metrics) modules; a one-line ConfigError naming the report extra
    when rliable or matplotlib is missing."""
    try:
        import matplotlib  # noqa: F401  (the plots; checked up front so nothing is half-written)
        from rliable import library, metrics
    except ImportError:
        raise ConfigError(needs_report_extra()) from None
    return library, metrics


@dataclass
class Run:
    """One run directory: its config as plain nested YAML and its metric records."""

    path: Path
    config: dict[str, Any]
    records: list[dict[str, Any]]
    evals: list[
        dict[str, Any]
    ]  # records with eval/success_mean, in time order (a resume's re-done steps replace the old ones)

    @property
    def name(self) -> str | None:
        run = self.config.get("run")
        return run.get("name") if isinstance(run, dict) else None

    @property
    def tasks(self) -> list[str]:
        return [k[len(SUCCESS) :] for k in self.evals[-1] if k.startswith(SUCCESS)] if self.evals else []

    def scores(self, record: dict[str, Any], tasks: Sequence[str]) -> np.ndarray:
        return np.array([np.nan if record.get(SUCCESS + t) is None else float(record[SUCCESS + t]) for t in tasks])

    @property
    def best(self) -> dict[str, Any]:
        return max(self.evals, key=lambda r: r["eval/success_mean"])  # the first of equal ones

    @property
    def final_step(self) -> int:
        return self.evals[-1]["step"]

    def summary(self) -> dict[str, Any]:
        return {
            "dir": str(self.path),
            "final_step": self.final_step,
            "final_success_mean": self.evals[-1]["eval/success_mean"],
            "final_source": self.evals[-1].get("source", "metrics.jsonl"),
            "best_step": self.best["step"],
            "best_success_mean": self.best["eval/success_mean"],
        }

    def latest(self, prefix: str) -> dict[str, float]:
        """``{rest of key: value}`` of the last record that logged keys starting with ``prefix``."""
        for record in reversed(self.records):
            found = {k[len(prefix) :]: v for k, v in record.items() if k.startswith(prefix) and v is not None}
            if found:
                return found
        return {}

    def _order(self, names: set[str]) -> list[str]:
        return [t for t in self.tasks if t in names] + sorted(names - set(self.tasks))

    def attention(self) -> tuple[np.ndarray, list[str], list[str]] | None:
        """The latest CARE attention ``attention/<task>/<i>``: (tasks x encoders matrix, tasks, encoders)."""
        weights = {
            tuple(k.rsplit("/", 1)): v
            for k, v in self.latest("attention/").items()
            if k.rsplit("/", 1)[-1].isdigit() and int(k.rsplit("/", 1)[-1]) < MAX_ENCODERS
        }
        if not weights:
            return None
        tasks, encoders = (
            self._order({t for t, _ in weights}),
            [str(i) for i in range(1 + max(int(i) for _, i in weights))],
        )
        return np.array([[weights.get((t, i), np.nan) for i in encoders] for t in tasks]), tasks, encoders

    def conflict(self) -> tuple[np.ndarray, list[str], list[str]] | None:
        """The latest ``conflict/critic/cosine/<A>|<B>`` as a symmetric matrix with 1 on the diagonal."""
        cosine = {tuple(k.split("|", 1)): v for k, v in self.latest("conflict/critic/cosine/").items() if "|" in k}
        if not cosine:
            return None
        tasks = self._order({t for pair in cosine for t in pair})
        matrix = np.eye(len(tasks))
        for (a, b), v in cosine.items():
            matrix[tasks.index(a), tasks.index(b)] = matrix[tasks.index(b), tasks.index(a)] = v
        return matrix, tasks, tasks


@dataclass
class Method:
    """Runs (seeds) with the same method-defining config."""

    label: str
    key: dict[str, str]  # dotted key -> JSON value, the config minus NON_METHOD_KEYS
    runs: list[Run]

    @property
    def tasks(self) -> list[str]:
        return self.runs[0].tasks

    def scores(self, which: str = "final") -> np.ndarray:
        """(runs, tasks) success at each run's last ("final") or best ("best") evaluation."""
        return np.stack([r.scores(r.evals[-1] if which == "final" else r.best, self.tasks) for r in self.runs])

    def curves(self) -> tuple[list[int], np.ndarray]:
        """Eval steps common to all runs and the (runs, tasks, steps) success there."""
        by_step = [{e["step"]: e for e in r.evals} for r in self.runs]
        steps = sorted(set.intersection(*map(set, by_step)))
        data = [[r.scores(evals[s], self.tasks) for s in steps] for r, evals in zip(self.runs, by_step)]
        return steps, np.array(data).reshape(len(self.runs), len(steps), len(self.tasks)).transpose(0, 2, 1)


@dataclass
class Report:
    """What :func:`write_report` produced."""

    out_dir: Path
    methods: list[Method]
    results: dict[str, Any]
    files: list[Path] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _is_run(path: Path) -> bool:
    return (path / "config.yaml").is_file() and (path / "metrics.jsonl").is_file()


def load_run(path: Path) -> Run:
    """Read a run directory; a trailing line still being written and unreadable lines are ignored."""
    try:
        config = yaml.safe_load((path / "config.yaml").read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"'{path / 'config.yaml'}' is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(config, dict):
        raise ConfigError(f"'{path / 'config.yaml'}' is not a YAML mapping")
    records, evals = read_metrics(path), []
    for record in records:
        if record.get("eval/success_mean") is not None:  # read_metrics: None unless a finite number
            evals = [e for e in evals if e["step"] < record["step"]] + [record]
    extra = eval_json_record(path)
    if extra is not None and extra["step"] not in {e["step"] for e in evals}:  # training's own evaluation wins a tie
        evals = sorted([*evals, extra], key=lambda e: e["step"])
    return Run(path, config, records, evals)


EVAL_JSON = "eval.json"


def eval_json_record(path: Path) -> dict[str, Any] | None:
    """``RUN_DIR/eval.json`` (written by ``mtrl eval``) as an evaluation record at its
    checkpoint's step, marked ``"source": "eval.json"``; None when there is none."""
    file = path / EVAL_JSON
    if not file.is_file():
        return None
    try:
        data = json.loads(file.read_text())
        record = {
            "step": int(data["env_steps"]),
            "eval/success_mean": float(data["success_mean"]),
            "source": EVAL_JSON,
            **{SUCCESS + task: float(v["success"]) for task, v in data["tasks"].items()},
        }
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise ConfigError(
            f"'{file}' is not an evaluation written by `mtrl eval` ({type(e).__name__}: {e}); "
            "delete it or run `mtrl eval` again"
        ) from None
    return record


def drop_repeats(runs: Sequence[Run]) -> tuple[list[Run], list[str]]:
    """One run per method and seed: of runs with the same method-defining config and seed (a
    stopped run and its restart in another folder, say), the one evaluated furthest is kept
    (ties: the one that logged furthest, then the first found); one note per run left out."""
    kept: dict[str, Run] = {}
    notes = []
    furthest = lambda r: (r.final_step, r.records[-1]["step"] if r.records else 0)  # noqa: E731
    for run in runs:
        if run.config.get("seed") is None:  # not written by mtrl train: nothing says which seed it is
            kept[str(id(run))] = run
            continue
        key = json.dumps([method_key(run.config), run.config["seed"]], sort_keys=True)
        other = kept.get(key)
        if other is None:
            kept[key] = run
            continue
        keep, drop = (run, other) if furthest(run) > furthest(other) else (other, run)
        kept[key] = keep
        notes.append(
            f"'{drop.path}' repeats the method and seed {run.config.get('seed')} of '{keep.path}', which got "
            f"further (evaluated at step {keep.final_step:,}, against {drop.final_step:,}); counted "
            f"once, as '{keep.path}'"
        )
    chosen = {id(r) for r in kept.values()}
    return [r for r in runs if id(r) in chosen], notes


def find_runs(paths: Sequence[str | Path]) -> list[Run]:
    """Runs in ``paths``: each a run directory or a folder with runs up to two levels below."""
    runs, seen = [], set()
    for path in map(Path, paths):
        if not path.exists():
            raise ConfigError(f"'{path}' does not exist")
        if not path.is_dir():
            raise ConfigError(f"'{path}' is not a directory; pass run directories or folders that hold them")
        level, found = [path], []
        for _ in range(3):
            found += [d for d in level if _is_run(d)]
            level = [c for d in level if not _is_run(d) for c in sorted(d.iterdir()) if c.is_dir()]
        if not found:
            raise ConfigError(f"no run directory (config.yaml + metrics.jsonl) in '{path}' or two levels below it")
        for d in found:
            if d.resolve() not in seen:
                seen.add(d.resolve())
                runs.append(load_run(d))
    return runs


def flatten_config(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested config as ``{dotted.key: value}`` (an empty mapping is a value of its own);
    the method key of ``mtrl report`` and the base config of ``mtrl sweep``'s manifest."""
    out = {}
    for k, v in config.items():
        if isinstance(v, dict) and v:
            out.update(flatten_config(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _seedless_teachers(config: dict[str, Any]) -> dict[str, Any]:
    """``distill.teachers`` without a trailing ``seed<N>`` directory: a seed's student learns
    from that seed's teachers (``mtrl single-task``'s ``<task>/seed<s>`` layout), and the
    seeds of one distillation are one method."""
    distill = config.get("distill")
    if not isinstance(distill, dict) or not distill.get("teachers"):
        return config
    teachers = [re.sub(r"[/\\]seed\d+[/\\]?$", "", str(t)) for t in distill["teachers"]]
    return {**config, "distill": {**distill, "teachers": teachers}}


def method_key(config: dict[str, Any]) -> dict[str, str]:
    """The method-defining part of a config: dotted key -> JSON value."""
    flat = flatten_config(_seedless_teachers(config))
    return {
        k: json.dumps(v, sort_keys=True, default=str)
        for k, v in flat.items()
        if not any(k == n or k.startswith(n + ".") for n in NON_METHOD_KEYS)
    }


def _short(value: str) -> str:
    v = json.loads(value)
    return ",".join(map(str, v)) if isinstance(v, list) else format(v, ".6g") if isinstance(v, float) else str(v)


def group_runs(runs: Sequence[Run]) -> list[Method]:
    """Group runs into methods (in order of first appearance) and label them: the runs'
    ``run.name`` if it is one per method and unique, else the config keys that differ."""
    groups: dict[str, Method] = {}
    for run in runs:
        key = method_key(run.config)
        groups.setdefault(json.dumps(key, sort_keys=True), Method("", key, [])).runs.append(run)
    methods = list(groups.values())
    for m in methods:
        for run in m.runs[1:]:
            if set(run.tasks) != set(m.tasks):
                raise ConfigError(
                    f"runs '{m.runs[0].path}' and '{run.path}' have the same config but evaluate different tasks"
                )
    names = [{r.name for r in m.runs} for m in methods]
    if all(len(n) == 1 and None not in n for n in names) and len(set.union(*names)) == len(methods):
        labels = [n.pop() for n in names]
    else:
        keys = list(dict.fromkeys(k for m in methods for k in m.key))
        differ = sorted((k for k in keys if len({m.key.get(k) for m in methods}) > 1), key=lambda k: k != "agent.name")
        fallback = "agent.name" if "agent.name" in methods[0].key else None
        labels = [
            " ".join([f"{k}={_short(m.key[k])}" for k in differ or [fallback] if k in m.key][:4]) or "method"
            for m in methods
        ]
        labels = [f"{lab} #{i + 1}" if labels.count(lab) > 1 else lab for i, lab in enumerate(labels)]
    for m, label in zip(methods, labels):
        m.label = str(label)
    return methods


def probability_of_improvement(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """P(X > Y) + P(X = Y) / 2 per task, averaged over tasks: the same number as
    ``rliable.metrics.probability_of_improvement`` (Mann-Whitney U / (n_x n_y)), vectorised
    for the bootstrap, where rliable's runs scipy once per task and replicate (~40x slower)."""
    d = x[:, None, :] - y[None, :, :]
    return np.array([((d > 0) + 0.5 * (d == 0)).mean(axis=(0, 1)).mean()])


def _curve(data: np.ndarray, reps: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """IQM over (runs x tasks) of a (runs, tasks, steps) array per step, and its 95 % percentile
    band: rliable's stratified bootstrap (runs resampled within each task) and IQM (scipy's
    25 % trim_mean, as rliable.metrics.aggregate_iqm), vectorised over replicates and steps
    where rliable's per-replicate loop takes ~1 s per method."""
    from scipy.stats import trim_mean

    runs, tasks, steps = data.shape
    if not steps:
        return np.zeros(0), np.zeros((2, 0))
    boot = data[rng.integers(0, runs, (reps, runs, tasks)), np.arange(tasks)]  # (reps, runs, tasks, steps)
    band = np.percentile(trim_mean(boot.reshape(reps, -1, steps), 0.25, axis=1), [2.5, 97.5], axis=0)
    return trim_mean(data.reshape(-1, steps), 0.25, axis=0), band


def bootstrap_seed(seed: int, *labels: str) -> list[int]:
    """The RNG seed of one method's (or pair's) bootstrap: the report's seed and its labels."""
    return [seed, *(zlib.crc32(label.encode()) for label in labels)]


def aggregate(methods: Sequence[Method], reps: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Per method: IQM and mean of the final and best (runs x tasks) success with 95 %
    stratified-bootstrap CIs (rliable), per-task mean/std (population) over runs, the IQM
    curve over the eval steps common to its runs; and the probability of improvement with
    CI for every ordered pair of methods evaluated on the same tasks. Seeded: reproducible,
    and each method's (pair's) bootstrap is seeded by its own label(s), so its CIs do not
    change when other methods join the report."""
    rly, metrics = require_report_extra()
    iqm_mean = lambda s: np.array([metrics.aggregate_iqm(s), metrics.aggregate_mean(s)])  # noqa: E731
    state = np.random.get_state()  # rliable's bootstraps draw from numpy's global RNG; restored below
    try:
        out: dict[str, Any] = {
            "reps": reps,
            "seed": seed,
            "confidence": 0.95,
            "methods": [],
            "probability_of_improvement": [],
        }
        for m in methods:
            np.random.seed(bootstrap_seed(seed, m.label))
            rng = np.random.default_rng(bootstrap_seed(seed, m.label))
            entry: dict[str, Any] = {
                "label": m.label,
                "config": {k: json.loads(v) for k, v in m.key.items()},
                "tasks": m.tasks,
                "final_step": [min(r.final_step for r in m.runs), max(r.final_step for r in m.runs)],
                "runs": [r.summary() for r in m.runs],
            }
            for which in ("final", "best"):
                point, ci = rly.get_interval_estimates({"m": m.scores(which)}, iqm_mean, reps=reps)
                p, c = point["m"], ci["m"]
                entry[which] = {"iqm": p[0], "iqm_ci": list(c[:, 0]), "mean": p[1], "mean_ci": list(c[:, 1])}
            final = m.scores("final")
            entry["per_task"] = {
                t: {"mean": final[:, i].mean(), "std": final[:, i].std(), "n": len(final)}
                for i, t in enumerate(m.tasks)
            }
            steps, data = m.curves()
            iqm, (lo, hi) = _curve(data, reps, rng)
            entry["curve"] = {
                "step": steps,
                "iqm": list(iqm),
                "lo": list(lo),
                "hi": list(hi),
                "per_task_mean": data.mean(axis=0).tolist(),
            }
            out["methods"].append(entry)
        for i, a in enumerate(methods):
            for b in methods[i + 1 :]:
                if set(a.tasks) != set(b.tasks):
                    continue  # no common ground
                x, y = a.scores(), b.scores()[:, [b.tasks.index(t) for t in a.tasks]]
                np.random.seed(bootstrap_seed(seed, a.label, b.label))
                p = float(metrics.probability_of_improvement(x, y))
                _, ci = rly.get_interval_estimates({"p": [x, y]}, probability_of_improvement, reps=reps)
                lo, hi = ci["p"][:, 0]  # P(Y > X) = 1 - P(X > Y), so the reverse pair reuses the bootstrap
                out["probability_of_improvement"] += [
                    {"x": a.label, "y": b.label, "p": p, "ci": [lo, hi]},
                    {"x": b.label, "y": a.label, "p": 1 - p, "ci": [1 - hi, 1 - lo]},
                ]
    finally:
        np.random.set_state(state)
    return json.loads(json.dumps(out, default=float))  # plain floats and lists


def _ci(d: dict[str, Any], key: str) -> str:
    lo, hi = d[key + "_ci"]
    return f"{d[key]:.3f} [{lo:.3f}, {hi:.3f}]"


def _steps(m: dict[str, Any]) -> str:
    lo, hi = m["final_step"]
    return f"{lo:,}" if lo == hi else f"{lo:,}..{hi:,}"


def summary_rows(results: dict[str, Any]) -> list[list[str]]:
    """Rows of the summary table: method, runs, final step, final IQM, final mean, best IQM."""
    return [
        [
            m["label"],
            str(len(m["runs"])),
            _steps(m),
            _ci(m["final"], "iqm"),
            _ci(m["final"], "mean"),
            _ci(m["best"], "iqm"),
        ]
        for m in results["methods"]
    ]


SUMMARY_HEADER = ["method", "runs", "final step", "final IQM [95% CI]", "final mean [95% CI]", "best IQM [95% CI]"]


def summary_table(report: Report):
    """The summary as a rich Table for the terminal."""
    from rich.table import Table

    table = Table(
        title=f"{sum(len(m.runs) for m in report.methods)} runs, success rate, "
        f"95% stratified-bootstrap CIs ({report.results['reps']} reps)"
    )
    for i, h in enumerate(SUMMARY_HEADER):
        table.add_column(h, justify="left" if i == 0 else "right")
    for row in summary_rows(report.results):
        table.add_row(*row)
    return table


def markdown_table(header: list[str], rows: list[list[str]]) -> list[str]:
    """The lines of a Markdown table, ``|`` in cells escaped."""
    esc = lambda s: str(s).replace("|", "\\|")  # noqa: E731
    return ["| " + " | ".join(map(esc, header)) + " |", "|" + "---|" * len(header)] + [
        "| " + " | ".join(map(esc, r)) + " |" for r in rows
    ]


def _markdown(results: dict[str, Any], out: Path | None = None) -> str:
    ms = results["methods"]
    lines = [
        "# mtrl report",
        "",
        f"`{results['command']}`",
        "",
        f"{sum(len(m['runs']) for m in ms)} runs of {len(ms)} method(s). Success rate over (runs x "
        "tasks) at each run's last "
        "evaluation (final) and at its best one by mean success (best); 95 % stratified-bootstrap "
        "confidence intervals "
        f"(rliable, {results['reps']} reps, seed {results['seed']}).",
        "",
    ]
    lines += markdown_table(SUMMARY_HEADER, summary_rows(results))
    poi = {(p["x"], p["y"]): p for p in results["probability_of_improvement"]}
    if poi:
        labels = [m["label"] for m in ms]
        cell = lambda p: f"{p['p']:.2f} [{p['ci'][0]:.2f}, {p['ci'][1]:.2f}]" if p else "-"  # noqa: E731
        lines += [
            "",
            "## Probability of improvement",
            "",
            "P(row > column): the chance that a run of the row method beats "
            "one of the column method on a task, averaged over tasks [95 % CI].",
            "",
        ]
        lines += markdown_table(["", *labels], [[a, *(cell(poi.get((a, b))) for b in labels)] for a in labels])
    tasks = list(dict.fromkeys(t for m in ms for t in m["tasks"]))
    cell = lambda d: f"{d['mean']:.2f} ± {d['std']:.2f}" if d else "-"  # noqa: E731
    lines += ["", "## Final success per task", "", "Mean ± std over runs.", ""]
    lines += markdown_table(
        ["task", *(m["label"] for m in ms)], [[t, *(cell(m["per_task"].get(t)) for m in ms)] for t in tasks]
    )
    lines += ["", "## Runs", ""]
    lines += markdown_table(
        ["method", "run", "final step", "final success", "best step", "best success"],
        [
            [
                m["label"],
                r["dir"],
                f"{r['final_step']:,}" + (" (eval.json)" if r.get("final_source") == EVAL_JSON else ""),
                f"{r['final_success_mean']:.3f}",
                f"{r['best_step']:,}",
                f"{r['best_success_mean']:.3f}",
            ]
            for m in ms
            for r in m["runs"]
        ],
    )
    videos = [(r["dir"], sorted((Path(r["dir"]) / "videos").glob("*.mp4"))) for m in ms for r in m["runs"]]
    if any(files for _, files in videos):  # links relative to the report, written by `mtrl eval RUN_DIR --video`
        link = lambda v: Path(os.path.relpath(v.resolve(), Path(out or ".").resolve())).as_posix()  # noqa: E731
        lines += [
            "",
            "## Videos",
            "",
            "One deterministic episode per task (`mtrl eval RUN_DIR --video`); the bar "
            "along the bottom turns from red to green at the first success.",
            "",
        ]
        lines += [f"- {run}: " + ", ".join(f"[{v.stem}](<{link(v)}>)" for v in files) for run, files in videos if files]
    if results["skipped"]:
        lines += ["", "Skipped: " + "; ".join(results["skipped"])]
    return "\n".join(lines) + "\n"


def _heatmaps(path: Path, panels: list[tuple[str, np.ndarray, list[str], list[str]]], title: str, **imshow) -> Path:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.5 * len(panels), 0.35 * max(len(p[2]) for p in panels) + 2), layout="constrained")
    for ax, (label, matrix, rows, cols) in zip(np.atleast_1d(fig.subplots(1, len(panels))), panels):
        image = ax.imshow(matrix, aspect="auto", **imshow)
        ax.set(title=label, yticks=range(len(rows)), xticks=range(len(cols)))
        ax.set_yticklabels(rows, fontsize=7)
        ax.set_xticklabels(cols, fontsize=7, rotation=90 if len(max(cols, key=len)) > 2 else 0)
        fig.colorbar(image, ax=ax, shrink=0.8)
    fig.suptitle(title)
    save_figure(fig, path)
    return path


LINE_STYLES = ("-", "--", ":", "-.")
MARKERS = ("o", "s", "^", "D", "v")


def method_styles(count: int) -> list[dict[str, str]]:
    """A distinct (colour, line style, marker) per method: the 10 default colours with solid
    lines first, then dashed, dotted, dash-dotted; then other markers. Two methods of a large
    report never share a legend entry's look, as they would cycling through the colours alone."""
    colours = 10
    return [
        {
            "color": f"C{k % colours}",
            "linestyle": LINE_STYLES[k // colours % len(LINE_STYLES)],
            "marker": MARKERS[k // (colours * len(LINE_STYLES)) % len(MARKERS)],
        }
        for k in range(count)
    ]


def plot(methods: Sequence[Method], results: dict[str, Any], out_dir: Path) -> list[Path]:
    """success_curve.png, per_task_curves.png, attention.png, conflict.png (each only when something logged it)."""
    from matplotlib.figure import Figure

    files, ms = [], results["methods"]
    styles, many = method_styles(len(ms)), len(ms) > 10  # many: the legend beside the plot, fainter CI bands
    fig = Figure(figsize=(10 if many else 7, 4.5), layout="constrained")
    ax = fig.subplots()
    for m, style in zip(ms, styles):
        c = m["curve"]
        ax.plot(c["step"], c["iqm"], ms=3, label=m["label"], **style)
        ax.fill_between(c["step"], c["lo"], c["hi"], alpha=0.07 if many else 0.2, color=style["color"])
    ax.set(
        xlabel="environment steps",
        ylabel="success rate, IQM over runs x tasks",
        ylim=(-0.02, 1.02),
        title="success (95 % CI)",
    )
    ax.legend(
        fontsize=8, **({"loc": "upper left", "bbox_to_anchor": (1.01, 1), "ncols": 1 + len(ms) // 25} if many else {})
    )
    save_figure(fig, out_dir / "success_curve.png")
    files.append(out_dir / "success_curve.png")
    tasks = list(dict.fromkeys(t for m in ms for t in m["tasks"]))
    cols = min(5, len(tasks))
    fig = Figure(figsize=(3 * cols, 2.4 * -(-len(tasks) // cols) + 0.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(-(-len(tasks) // cols), cols, sharex=True, sharey=True, squeeze=False)).ravel()
    for ax, task in zip(axes, tasks):
        for k, m in enumerate(ms):
            if task in m["tasks"]:
                series = m["curve"]["per_task_mean"][m["tasks"].index(task)]
                ax.plot(m["curve"]["step"], series, ms=2, label=m["label"], **styles[k])
        ax.set_title(task, fontsize=8)
        ax.set_ylim(-0.02, 1.02)
    for ax in axes[len(tasks) :]:
        ax.set_visible(False)
    handles = {}  # every method once, also those not evaluated on the first task
    for ax in axes[: len(tasks)]:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    fig.legend(list(handles.values()), list(handles), loc="outside lower center", ncols=min(4, len(ms)), fontsize=8)
    save_figure(fig, out_dir / "per_task_curves.png")
    files.append(out_dir / "per_task_curves.png")
    first = lambda values: next((v for v in values if v is not None), None)  # noqa: E731  (the first run that logged it)
    attention = [(m.label, *a) for m in methods if (a := first(r.attention() for r in m.runs))]
    conflict = [(m.label, *c) for m in methods if (c := first(r.conflict() for r in m.runs))]
    if attention:
        files.append(
            _heatmaps(
                out_dir / "attention.png",
                attention,
                "CARE attention (latest): tasks x encoders",
                vmin=0,
                cmap="viridis",
            )
        )
    if conflict:
        files.append(
            _heatmaps(
                out_dir / "conflict.png", conflict, "critic gradient cosine (latest)", vmin=-1, vmax=1, cmap="RdBu"
            )
        )
    return files


def write_report(
    paths: Sequence[str | Path],
    out_dir: str | Path = "report",
    reps: int = 2000,
    seed: int = 0,
    step: int | None = None,
) -> Report:
    """Find, group and aggregate the runs in ``paths``; write summary.md, summary.csv,
    per_task.csv, summary.json and the plots to ``out_dir`` (created; other files kept).
    ``step``: read every run as it stood at that env step (its evaluations up to it), to
    compare sample efficiency where the final evaluations are all at the ceiling."""
    require_report_extra()
    if reps < 1:
        raise ConfigError(f"--reps must be at least 1, got {reps}")
    if step is not None and step < 0:
        raise ConfigError(f"--step must be a number of env steps >= 0, got {step}")
    runs, warnings = find_runs(paths), []
    if step is not None:
        for run in runs:
            run.records = [r for r in run.records if r.get("step", 0) <= step]
            run.evals = [e for e in run.evals if e["step"] <= step]
    for run in runs:
        if not run.evals:
            warnings.append(f"'{run.path}' has no evaluation yet; skipped")
        elif not run.tasks:
            warnings.append(f"'{run.path}' logs no per-task success (eval/success/<task>); skipped")
    evaluated = [r for r in runs if r.tasks]
    if not evaluated:
        raise ConfigError("no run has an evaluation yet: " + ", ".join(f"'{r.path}'" for r in runs))
    evaluated, repeats = drop_repeats(evaluated)
    warnings += repeats
    methods = group_runs(evaluated)
    results = aggregate(methods, reps, seed)
    out = Path(out_dir)
    options = (
        ["--out", str(out)]
        + (["--reps", str(reps)] if reps != 2000 else [])
        + (["--seed", str(seed)] if seed else [])
        + (["--step", str(step)] if step is not None else [])
    )
    results["command"] = "mtrl report " + shlex.join([*map(str, paths), *options])
    results["skipped"] = warnings
    out.mkdir(parents=True, exist_ok=True)
    report = Report(out, methods, results, warnings=warnings)
    atomic_write(out / "summary.md", _markdown(results, out))
    atomic_write(out / "summary.json", json.dumps(results, indent=2) + "\n")
    atomic_write(
        out / "summary.csv",
        csv_text(
            [
                ["method", "runs", "final_step_min", "final_step_max"]
                + [f"{a}_{s}{e}" for a in ("final", "best") for s in ("iqm", "mean") for e in ("", "_lo", "_hi")]
            ]
            + [
                [m["label"], len(m["runs"]), *m["final_step"]]
                + [x for a in ("final", "best") for s in ("iqm", "mean") for x in (m[a][s], *m[a][s + "_ci"])]
                for m in results["methods"]
            ]
        ),
    )
    atomic_write(
        out / "per_task.csv",
        csv_text(
            [["method", "task", "mean", "std", "n"]]
            + [
                [m["label"], t, d["mean"], d["std"], d["n"]]
                for m in results["methods"]
                for t, d in m["per_task"].items()
            ]
        ),
    )
    report.files = [out / n for n in ("summary.md", "summary.csv", "per_task.csv", "summary.json")] + plot(
        methods, results, out
    )
    return report


def csv_text(rows: list[list[Any]]) -> str:
    """Rows as CSV text."""
    text = io.StringIO()
    csv.writer(text).writerows(rows)
    return text.getvalue()


def save_figure(fig: Any, path: Path) -> None:
    """A matplotlib figure as a PNG, written atomically."""
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110))
