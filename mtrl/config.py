"""Typed run configuration: YAML file + dotted overrides -> validated dataclasses.

One flat-ish tree of dataclasses, no interpolation and no includes, so a config file
reads as the full set of knobs. The ``env``, ``agent`` and ``scheduler`` sections are
typed by whatever the registry says the chosen suite / agent / scheduler accepts.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import functools
import importlib
import inspect
import textwrap
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mtrl import registry
from mtrl.errors import (  # noqa: F401  (ConfigError: re-exported)
    ConfigError,
    at_least,
    check_values,
    did_you_mean,
    finite,
    in_unit_interval,
    install_hint,
    one_of,
    or_null,
    positive,
)

# The values some fields accept. They live here, not in the modules that implement them
# (mtrl/learner/conflict.py, mtrl/learner/task_weighting.py import them), so that reading a config needs no
# algorithm code; the suite/agent/scheduler sections are typed through the registry.
CONFLICT_METHODS = ("none", "pcgrad", "cagrad", "upgrad", "nash_mtl", "imtl_g", "aligned_mtl")
TASK_WEIGHTINGS = ("none", "inverse_size", "uncertainty", "famo")
FAMO_UPDATES = ("same_batch", "next_batch")
TASK_LOSS_MASKS = ("critic", "total")
TASK_RESETS = ("mean", "convex")
# Conflict methods delegated to torchjd: the modules each one imports, and the torchjd extra
# providing them. mtrl's `conflict` extra installs all of them.
TORCHJD_METHODS = {
    "upgrad": (("torchjd", "qpsolvers", "quadprog"), "torchjd[quadprog-projector]"),
    "imtl_g": (("torchjd",), "torchjd"),
    "aligned_mtl": (("torchjd",), "torchjd"),
}


# Every field's meaning is the string literal on the line after it (an attribute docstring,
# as in CleanRL's configs): `field_docs` reads them and `mtrl train CONFIG --show-config`
# prints them beside the values. The first line is the summary; further lines say more.


@dataclass
class RunConfig:
    """Where the run lives."""

    name: str = "run"
    """The run's name: its folder's prefix and its label in reports; default: the config file's name."""
    dir: str = ""
    """The run's folder; empty: runs/<name>-seed<seed>-<time>."""
    wandb: bool = False
    """Also log to Weights & Biases (the wandb extra); metrics.jsonl and TensorBoard are always written."""
    wandb_project: str = "mtrl"
    """The W&B project of the run (run.wandb=true)."""
    wandb_mode: str = ""
    """W&B's mode: online, offline (wandb sync later) or disabled; empty: WANDB_MODE, else online."""


@dataclass
class DistillConfig:
    """Distillation from single-task teachers (mtrl/learner/distillation.py): the student's actor loss
    gains weight * KL(teacher || student) on each teacher's task's states."""

    teachers: list[str] = field(default_factory=list)
    """Run directories of single-task teacher runs (mtrl single-task); empty: no distillation."""
    weight: float = 1.0
    """The distillation KL's weight in the actor loss."""


@dataclass
class SACConfig:
    """Soft actor-critic hyper-parameters (Meta-World+ MT-SAC defaults)."""

    gamma: float = 0.99
    """Discount factor."""
    tau: float = 0.005
    """Target networks' Polyak rate."""
    encoder_tau: float | None = None
    """The target encoder's Polyak rate; null: sac.tau."""
    actor_lr: float = 3e-4
    """Actor's Adam learning rate."""
    critic_lr: float = 3e-4
    """Critics' (and encoder's) Adam learning rate."""
    alpha_lr: float = 3e-4
    """Learning rate of the entropy temperatures' log alpha."""
    alpha_beta1: float = 0.9
    """Adam's beta1 for the temperatures (PyTorch's default; BRC's code: 0.5)."""
    temperature: str = "per_task"
    """per_task (one alpha per task, loss -log alpha_t (log pi + H*)) | shared (one alpha, loss alpha (H - H*): BRC's).

    shared is BRC's code (jaxrl/agent/update.py update_temperature): one scalar for every task,
    driven by the batch's mean entropy H against the target H*."""
    initial_alpha: float = 1.0
    """Every task's entropy temperature at the start."""
    target_entropy: float | None = None
    """The temperatures' entropy target; null: -|A| (minus the action dimension)."""
    max_grad_norm: float | None = 1.0
    """Gradient-norm clipping of each network's update; null: no clipping."""
    task_weights: bool = False
    """Meta-World+'s use_task_weights: each task's losses weighted by softmax(-log alpha) * T.

    Tasks whose policy has become confident weigh more."""
    task_weighting: str = "none"
    """Per-task loss weights from the critic's per-task losses: none | inverse_size | uncertainty | famo.

    uncertainty: Kendall et al. 2018; famo: Liu et al. 2023 (mtrl/learner/task_weighting.py). Multiplies
    sac.task_weights' when both are on."""
    task_weighting_lr: float | None = None
    """Adam's rate for uncertainty's log-variances / FAMO's logits; null: the reference's, 0.01 / 0.025.

    Cranial-XIX/FAMO: mtrl_files/uw_state_sac.yaml's w_lr, run.sh's MT10 wlr for FAMO. Before
    issue 22 mtrl used 0.025 for both."""
    task_weighting_actor: bool | None = None
    """How sac.task_weighting weighs the actor's terms; null: as each method's reference code.

    null: uncertainty fits the actor its own log-variances on the actor's per-task losses, FAMO
    leaves the actor alone, inverse_size weighs it as the critic (Cranial-XIX/FAMO mtrl_files/uw.py,
    famo.py). true: the critic's weights scale the actor's terms too (mtrl before issue 22);
    false: the critic only."""
    famo_update: str = "same_batch"
    """When FAMO's logits learn: same_batch | next_batch.

    same_batch (the reference's MT10 agent): from the change of each task's critic loss on the
    update's own batch across the critic step, one more critic forward pass; next_batch (mtrl before
    issue 22): from the change between one update's batch and the next's, no extra pass."""
    famo_weight_decay: float = 0.01
    """Weight decay (FAMO's gamma) of the Adam that moves FAMO's logits; its MT10 script's 0.01."""
    precision: str = "auto"
    """The update's matmul precision: auto | float32 | bfloat16.

    bfloat16: hidden-layer matmuls under autocast (2.5x faster updates on a CPU with
    AVX512-BF16, docs/PERFORMANCE.md); output layers, losses and Adam stay float32. auto:
    bfloat16 where the hardware runs it fast (AVX512-BF16/AMX CPU, bf16 CUDA device), else
    float32 (mtrl/hardware.py); the run's config.yaml records the choice."""
    compile: bool = False
    """torch.compile the networks' forward passes (and so their backward).

    Measured slower on the 2-core CPU (0.92x) and not yet on a GPU; off by default."""
    task_loss_threshold: float | None = None
    """PaCo's mask_extreme_task: a task whose mean loss (sac.task_loss_mask) exceeds this is masked and reset.

    Also a non-finite critic loss masks (and resets); null: only that. PaCo's configs set 3e3."""
    task_loss_mask: str = "critic"
    """Which per-task loss sac.task_loss_threshold bounds: critic | total.

    critic: each task's mean critic loss (mtrl's). total: PaCo's reference, the sum of the actor,
    critic and temperature losses as its ALF code values them, 0.5 critic + 0.5 |dQ/da|^2
    + alpha log pi + log alpha (-log pi - target entropy) per sample, at the update's start
    (one more actor and critic pass per update: PaCo's updates took 1.2-1.6x as long)."""
    task_reset: str = "mean"
    """How a masked task is reset: mean | convex.

    mean (mtrl's): its task-specific parameters become the unmasked tasks' mean, its temperature
    their mean log alpha, their Adam moments zero. convex (PaCo's reset_task_method=interpolate):
    its task-specific parameters become a random convex combination of the unmasked tasks', the
    same weights for all of a task's parameters; temperature and Adam state left as they are."""
    log_alpha_min: float | None = None
    """A floor on log alpha as the losses read it (PaCo: -10; no gradient below it); null: none."""
    log_alpha_max: float | None = None
    """A ceiling log alpha is clipped to after each temperature step (PaCo: 0); null: none."""
    weight_decay: float = 0.0
    """> 0: AdamW with this decoupled decay for actor and critics (BRC: 1e-4); 0: Adam."""
    reward_scaling: str = "none"
    """none (raw rewards) | returns (each task's rewards divided by its running return scale).

    returns is BRC's per-task reward normalisation (mtrl/learner/reward_scale.py): scaled soft returns
    stay within +-sac.reward_scale_bound."""
    reward_scale_bound: float = 10.0
    """The bound on scaled soft returns under sac.reward_scaling=returns."""
    n_step: int = 1
    """n-step returns (FastTD3 uses 3): the target sums n rewards, bootstraps with gamma^n.

    Shorter at an episode's end (mtrl/learner/replay.py); 1: one-step targets."""


@dataclass
class TrainConfig:
    """Collection, update and bookkeeping schedule. Step counts are environment steps
    summed over all tasks (one vector step of E slots counts E)."""

    total_steps: int = 1_000_000
    """Environment steps of the whole run, summed over tasks."""
    num_slots: int | None = None
    """Environment slots E stepped together; null: one per task."""
    warmup_steps: int = 10_000
    """Steps of uniform-random actions before the first update (at least n_step steps of every slot)."""
    batch_per_task: int = 128
    """Transitions per task in each update's batch (the batch holds batch_per_task * T)."""
    batch_allocation: str = "equal"
    """equal | scheduler (per-task batch shares follow the scheduler)."""
    updates_per_step: int = 1
    """Gradient updates per vector step."""
    buffer_per_task: int = 1_000_000
    """Replay capacity per task, in transitions."""
    eval_every: int = 100_000
    """Steps between evaluations during training; 0: only the final evaluation."""
    eval_episodes: int = 50
    """Episodes per task at each evaluation during training (goals rotate between them)."""
    final_eval_episodes: int = 50
    """Episodes per task at the end: Meta-World's protocol, one per each of its 50 goals."""
    eval_stop_on_success: bool = True
    """Meta-World+: an evaluation episode's outcome is fixed once it succeeds."""
    log_every: int = 10_000
    """Steps between training-metric lines in metrics.jsonl; 0: no training logs."""
    checkpoint_every: int = 100_000
    """Steps between checkpoints; 0: only the final checkpoint."""
    keep_checkpoints: int = 2
    """Newest checkpoint files kept (at least 1)."""
    divergence_patience: int = 100
    """Stop the run after this many updates in a row that skipped a non-finite step or masked a task.

    A task is masked when its critic loss exploded (sac.task_loss_threshold)."""
    save_replay: bool = False
    """Include the replay buffer in checkpoints (exact resume, large files)."""
    progress: bool = True
    """Show a progress bar while training."""
    threads: int | None = 1
    """torch's CPU threads (torch.set_num_threads) for this run; null: torch's default.

    torch's default is one per core, or OMP_NUM_THREADS. One measured fastest here for mtrl's
    small networks, alone and beside other jobs (docs/PERFORMANCE.md); `mtrl sweep` sets it
    to --cpus-per-trial."""


@dataclass
class ConflictConfig:
    """Gradient-conflict monitoring and mitigation (mtrl/learner/conflict.py)."""

    monitor_every: int = 1000
    """Updates between gradient-conflict measurements; 0 turns the monitor off."""
    method: str = "none"
    """Per-task gradient combiner: none (mean) | pcgrad | cagrad | upgrad | nash_mtl | imtl_g | aligned_mtl.

    Applied to the shared parameters' update; upgrad, imtl_g and aligned_mtl need the
    `conflict` extra (torchjd)."""
    cagrad_c: float = 0.5
    """CAGrad's c: how far the update may bend towards the worst-off task (0: the mean gradient)."""


@dataclass
class Config:
    """The whole run. ``env``/``agent``/``scheduler`` are the registered components' configs."""

    seed: int = 0
    """Seeds torch, numpy, the environments and the scheduler."""
    device: str = "auto"
    """auto | cpu | cuda; auto: cuda when available."""
    resume: bool = False
    """Continue the run in run.dir from its last checkpoint."""
    run: RunConfig = field(default_factory=RunConfig)
    """Where the run lives."""
    env: Any = field(default=None, metadata={"kind": "suite", "selector": "suite", "default": "toy"})
    """The task suite; env.suite picks it (mtrl list shows them)."""
    agent: Any = field(default=None, metadata={"kind": "agent", "selector": "name", "default": "mtsac"})
    """The agent's networks; agent.name picks it (mtrl list shows them)."""
    scheduler: Any = field(default=None, metadata={"kind": "scheduler", "selector": "name", "default": "round_robin"})
    """Which task each environment slot runs next; scheduler.name picks it."""
    sac: SACConfig = field(default_factory=SACConfig)
    """Soft actor-critic hyper-parameters."""
    train: TrainConfig = field(default_factory=TrainConfig)
    """Collection, update and bookkeeping schedule."""
    conflict: ConflictConfig = field(default_factory=ConflictConfig)
    """Gradient-conflict monitoring and mitigation."""
    distill: DistillConfig = field(default_factory=DistillConfig)
    """Distillation from single-task teachers."""


DEVICES = ("auto", "cpu", "cuda")
REWARD_SCALINGS = ("none", "returns")

PRECISIONS = ("auto", "float32", "bfloat16")
TEMPERATURES = ("per_task", "shared")
ALLOCATIONS = ("equal", "scheduler")


def config_search_path() -> list[Path]:
    """Folders searched for a config given by name: ./configs, the source tree, the install."""
    import sys

    here = Path(__file__).resolve().parent.parent / "configs"
    return [Path.cwd() / "configs", here, Path(sys.prefix) / "share" / "mtrl" / "configs"]


def available_configs() -> list[str]:
    names: set[str] = set()
    for folder in config_search_path():
        if folder.is_dir():
            names.update(p.stem for p in folder.glob("*.yaml"))
    return sorted(names)


def find_config(name_or_path: str) -> Path:
    """Resolve a YAML path or a config name (``mt10-mtsac``) to a file."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise ConfigError(f"config file '{name_or_path}' does not exist")
        return path
    for folder in config_search_path():
        candidate = folder / f"{name_or_path}.yaml"
        if candidate.is_file():
            return candidate
    raise ConfigError(
        f"unknown config '{name_or_path}'{did_you_mean(name_or_path, available_configs())}; "
        f"pass a YAML path or one of: {', '.join(available_configs())}"
    )


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["train.total_steps=2000", "seed=3"]`` -> nested dict, values parsed as YAML scalars."""
    nested: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"override '{item}' is not of the form dotted.key=value")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError:
            value = raw
        node = nested
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override '{item}' sets a key below the value '{part}'")
        node[parts[-1]] = value
    return nested


def merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Recursive dict merge; ``update`` wins. Changing a selector key restarts its section."""
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            old = out[key]
            selector_changed = any(s in value and s in old and value[s] != old[s] for s in ("suite", "name"))
            out[key] = dict(value) if selector_changed else merge(old, value)
        else:
            out[key] = value
    return out


# Keys added after runs were recorded, whose default changes what such a run computes: a run's
# own config.yaml without the key ran with this value (agent name -> {key: value}).
RUN_CONFIG_LEGACY: dict[str, dict[str, Any]] = {"care": {"embedding_relu": False}}


def fill_legacy_keys(data: dict[str, Any]) -> dict[str, Any]:
    """A run's recorded config (plain data), with each key it predates set to what it ran with."""
    agent = data.get("agent")
    if isinstance(agent, dict):
        for key, value in RUN_CONFIG_LEGACY.get(agent.get("name"), {}).items():
            agent.setdefault(key, value)
    return data


def load_config(name_or_path: str, overrides: list[str] | None = None) -> Config:
    """Read a config file, apply dotted overrides and validate everything."""
    path = find_config(name_or_path)
    data = read_yaml(path)
    if is_run_config(path):
        data = fill_legacy_keys(data)
    data = merge(data, parse_overrides(overrides or []))
    data.setdefault("run", {}).setdefault("name", path.stem)
    if data.get("resume") is True and not data["run"].get("dir") and is_run_config(path):
        # `mtrl train RUN/config.yaml resume=true` (what a stopped run prints) continues RUN,
        # also when its folder was chosen automatically and so is not in the file
        data["run"]["dir"] = str(path.parent)
    return from_dict(data)


def is_run_config(path: Path) -> bool:
    """Whether ``path`` is the ``config.yaml`` a run wrote into its own folder."""
    run_dir = path.parent
    return path.name == "config.yaml" and ((run_dir / "metrics.jsonl").is_file() or (run_dir / "checkpoints").is_dir())


def from_dict(data: dict[str, Any]) -> Config:
    """Build a validated :class:`Config` from plain data (e.g. a saved ``config.yaml``)."""
    cfg = build_dataclass(Config, data, "")
    check_values(value_checks(cfg))
    check_value_support(cfg)
    require_conflict_packages(cfg.conflict.method)  # a method from an optional package: say which extra, now
    return cfg


def require_conflict_packages(method: str) -> None:
    """Raise a one-line ConfigError when conflict ``method`` needs a package that is not installed."""
    if method not in TORCHJD_METHODS:
        return
    modules, provider = TORCHJD_METHODS[method]
    missing = []
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise ConfigError(
            f"conflict.method={method} needs {', '.join(missing)} (from {provider}): {install_hint('conflict')}"
        )


def check_value_support(cfg: Config) -> None:
    """Combinations of valid values that cannot work. ``sac.task_weighting_actor=false``
    needs a ``sac.task_weighting`` to keep off the actor. A categorical critic
    (``agent.v_max``, BRC) must hold the scaled returns: with
    ``sac.reward_scaling=returns`` they reach +-``sac.reward_scale_bound``, and the target
    projection would clip everything beyond the support. ``sac.log_alpha_min`` must lie below
    ``sac.log_alpha_max``."""
    if cfg.sac.task_weighting_actor is False and cfg.sac.task_weighting == "none":
        raise ConfigError(
            "sac.task_weighting_actor=false keeps sac.task_weighting's weights off the actor, but "
            "sac.task_weighting=none has none: set sac.task_weighting (one of "
            f"{', '.join(w for w in TASK_WEIGHTINGS if w != 'none')}) or drop sac.task_weighting_actor=false"
        )
    low, high = cfg.sac.log_alpha_min, cfg.sac.log_alpha_max
    if low is not None and high is not None and low >= high:
        raise ConfigError(f"sac.log_alpha_min={low:g} must be below sac.log_alpha_max={high:g} (PaCo's: -10 and 0)")
    v_max = getattr(cfg.agent, "v_max", None)
    bound = cfg.sac.reward_scale_bound
    if v_max is not None and cfg.sac.reward_scaling == "returns" and v_max < bound:
        raise ConfigError(
            f"agent.v_max={v_max:g} is below sac.reward_scale_bound={bound:g}: the critics' support "
            f"would clip the scaled returns; set agent.v_max={bound:g} or sac.reward_scale_bound={v_max:g}"
        )


def value_checks(cfg: Config) -> list[tuple[str, Any, Callable[[Any], bool], str]]:
    """The core sections' checks: (key, value, predicate, "must be ...") rows. The env, agent
    and scheduler sections check themselves (their dataclasses' ``validate``)."""
    t, s, c = cfg.train, cfg.sac, cfg.conflict
    return [
        ("seed", cfg.seed, at_least(0), "at least 0"),
        ("device", cfg.device, *one_of(DEVICES)),
        ("run.wandb_mode", cfg.run.wandb_mode, *one_of(("", "online", "offline", "disabled"))),
        ("train.total_steps", t.total_steps, at_least(1), "at least 1"),
        ("train.num_slots", t.num_slots, or_null(at_least(1)), "at least 1 (or null: one per task)"),
        ("train.warmup_steps", t.warmup_steps, at_least(0), "at least 0"),
        ("train.batch_per_task", t.batch_per_task, at_least(1), "at least 1"),
        ("train.batch_allocation", t.batch_allocation, *one_of(ALLOCATIONS)),
        ("train.updates_per_step", t.updates_per_step, at_least(1), "at least 1"),
        ("train.buffer_per_task", t.buffer_per_task, at_least(1), "at least 1"),
        ("train.eval_every", t.eval_every, at_least(0), "at least 0 (0: only the final evaluation)"),
        ("train.eval_episodes", t.eval_episodes, at_least(1), "at least 1"),
        ("train.final_eval_episodes", t.final_eval_episodes, at_least(1), "at least 1"),
        ("train.log_every", t.log_every, at_least(0), "at least 0 (0: no training logs)"),
        ("train.checkpoint_every", t.checkpoint_every, at_least(0), "at least 0 (0: only the final checkpoint)"),
        ("train.keep_checkpoints", t.keep_checkpoints, at_least(1), "at least 1"),
        ("train.divergence_patience", t.divergence_patience, at_least(1), "at least 1"),
        ("train.threads", t.threads, or_null(at_least(1)), "at least 1 (or null: torch's default)"),
        ("sac.gamma", s.gamma, in_unit_interval, "in (0, 1]"),
        ("sac.tau", s.tau, in_unit_interval, "in (0, 1]"),
        ("sac.encoder_tau", s.encoder_tau, or_null(in_unit_interval), "in (0, 1] (or null: sac.tau)"),
        ("sac.actor_lr", s.actor_lr, positive, "positive"),
        ("sac.critic_lr", s.critic_lr, positive, "positive"),
        ("sac.alpha_lr", s.alpha_lr, positive, "positive"),
        ("sac.alpha_beta1", s.alpha_beta1, lambda v: 0 <= v < 1, "in [0, 1)"),
        ("sac.temperature", s.temperature, *one_of(TEMPERATURES)),
        ("sac.initial_alpha", s.initial_alpha, positive, "positive"),
        ("sac.max_grad_norm", s.max_grad_norm, or_null(positive), "positive (or null: no clipping)"),
        (
            "sac.task_loss_threshold",
            s.task_loss_threshold,
            or_null(positive),
            "positive (or null: mask only non-finite losses)",
        ),
        ("sac.precision", s.precision, *one_of(PRECISIONS)),
        ("sac.n_step", s.n_step, at_least(1), "at least 1 (1: one-step targets)"),
        ("distill.weight", cfg.distill.weight, at_least(0), "at least 0"),
        ("sac.task_weighting", s.task_weighting, *one_of(TASK_WEIGHTINGS)),
        ("sac.task_weighting_lr", s.task_weighting_lr, or_null(positive), "positive (or null: the reference's)"),
        ("sac.famo_update", s.famo_update, *one_of(FAMO_UPDATES)),
        ("sac.famo_weight_decay", s.famo_weight_decay, at_least(0), "at least 0"),
        ("sac.task_loss_mask", s.task_loss_mask, *one_of(TASK_LOSS_MASKS)),
        ("sac.task_reset", s.task_reset, *one_of(TASK_RESETS)),
        ("sac.weight_decay", s.weight_decay, at_least(0), "at least 0 (0: Adam without decay)"),
        ("sac.reward_scaling", s.reward_scaling, *one_of(REWARD_SCALINGS)),
        ("sac.reward_scale_bound", s.reward_scale_bound, positive, "positive"),
        ("conflict.method", c.method, *one_of(CONFLICT_METHODS)),
        ("conflict.monitor_every", c.monitor_every, at_least(0), "at least 0 (0: off)"),
        ("conflict.cagrad_c", c.cagrad_c, at_least(0), "at least 0"),
    ]


def read_yaml(path: Path) -> dict[str, Any]:
    """A config file's mapping (empty file: ``{}``); unreadable or malformed YAML is a
    :class:`ConfigError` naming the file and the line."""
    try:
        with open(path) as f:
            data = yaml.safe_load(f)
    except yaml.YAMLError as e:
        raise ConfigError(f"config '{path}' is not valid YAML {_yaml_problem(e)}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"could not read config '{path}': {getattr(e, 'strerror', None) or e}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config '{path}' must be a YAML mapping at top level")
    return data


def _yaml_problem(e: yaml.YAMLError) -> str:
    """``at line 4, column 1: <problem> (while parsing ... started at line 3); <fix>``, one line."""
    mark, problem = getattr(e, "problem_mark", None), getattr(e, "problem", None)
    if mark is None or problem is None:
        return f"({' '.join(str(e).split())})"
    context, context_mark = getattr(e, "context", None), getattr(e, "context_mark", None)
    started = ""
    if context and context_mark is not None and context_mark.line != mark.line:
        started = f" ({context} started at line {context_mark.line + 1})"
    fix = "indent with spaces, not tabs" if "\\t" in problem else "fix the syntax there"  # PyYAML shows a tab as '\t'
    return f"at line {mark.line + 1}, column {mark.column + 1}: {problem}{started}; {fix}"


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain-data form of a config (what ``config.yaml`` holds)."""
    return dataclasses.asdict(cfg)


def config_yaml(cfg: Config) -> str:
    """The text of a run's ``config.yaml``."""
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


def field_docs(cls: type) -> dict[str, str]:
    """Each field's doc: the string literal on the line after its declaration in ``cls`` or a
    dataclass base (attribute docstrings). Fields without one are left out, and so is every
    field of a class whose source cannot be read (a plug-in installed without its .py files)."""
    docs: dict[str, str] = {}
    for klass in reversed([c for c in cls.__mro__ if dataclasses.is_dataclass(c)]):
        docs.update(_own_field_docs(klass))
    return docs


@functools.cache
def _own_field_docs(cls: type) -> dict[str, str]:
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError, SyntaxError):
        return {}
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    docs = {}
    for node, after in zip(body, body[1:]):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(after, ast.Expr)
            and isinstance(after.value, ast.Constant)
            and isinstance(after.value.value, str)
        ):
            docs[node.target.id] = inspect.cleandoc(after.value.value)
    return docs


def documented_yaml(cfg: Any, notes: dict[str, str] | None = None) -> str:
    """``config_yaml``'s content with each field's doc as a comment above it; ``notes`` adds a
    comment line to dotted keys (``{"sac.precision": "auto chose ..."}``). Loads back as the same data."""
    return "\n".join(_documented_lines(cfg, "", notes or {})) + "\n"


def _documented_lines(section: Any, prefix: str, notes: dict[str, str]) -> list[str]:
    pad = "  " * prefix.count(".")
    docs = field_docs(type(section))
    lines = []
    for f in dataclasses.fields(section):
        value, key = getattr(section, f.name), prefix + f.name
        comments = [*filter(None, docs.get(f.name, "").splitlines()), *([notes[key]] if key in notes else [])]
        lines += [f"{pad}# {line}".rstrip() for line in comments]
        if dataclasses.is_dataclass(value):
            lines += [f"{pad}{f.name}:", *_documented_lines(value, key + ".", notes)]
        else:
            lines += [pad + line for line in yaml.safe_dump({f.name: value}, sort_keys=False).splitlines()]
    return lines


# --- validation -------------------------------------------------------------------------


def build_dataclass(cls: type, data: Any, prefix: str) -> Any:
    """Validate ``data`` against dataclass ``cls``; ``prefix`` names the section in errors.

    Keys and types are checked here; values, by the dataclass's ``validate()`` method if it
    has one (the components' configs do: it raises :class:`ConfigError`), called once built.
    This is the one place values are checked: the components built from a loaded config do
    not check it again (code that makes a config by hand calls its ``validate()``).
    """
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"'{prefix.rstrip('.')}' must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in data:
        if not isinstance(key, str):
            raise ConfigError(
                f"config key {key!r}{f' under {prefix.rstrip(chr(46))!r}' if prefix else ''} is not a name; "
                "keys are words such as total_steps"
            )
        if key not in fields:
            close = difflib.get_close_matches(key, list(fields), n=3, cutoff=0.5)
            hint = ", ".join(f"'{prefix}{c}'" for c in close) if close else ", ".join(f"'{prefix}{f}'" for f in fields)
            raise ConfigError(f"unknown config key '{prefix}{key}'; closest valid keys: {hint}")
    kwargs = {}
    for name, f in fields.items():
        key = f"{prefix}{name}"
        if "kind" in f.metadata:
            kwargs[name] = _build_component(f.metadata, data.get(name), key)
        elif dataclasses.is_dataclass(hints[name]):
            kwargs[name] = build_dataclass(hints[name], data.get(name), key + ".")
        elif name in data:
            kwargs[name] = _check_type(data[name], hints[name], key)
    obj = cls(**kwargs)
    if callable(getattr(obj, "validate", None)):
        obj.validate()
    return obj


def _build_component(meta: dict[str, str], data: Any, key: str) -> Any:
    """A registry-typed section: its selector key picks the dataclass that validates it."""
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"'{key}' must be a mapping, got {data!r}")
    data = dict(data or {})
    selector = meta["selector"]
    choice = data.setdefault(selector, meta["default"])
    if not isinstance(choice, str):
        raise ConfigError(f"'{key}.{selector}' must be a name, got {choice!r}")
    entry = registry.get(meta["kind"], choice, key=f"{key}.{selector}")
    return build_dataclass(entry.config_cls, data, key + ".")


def _check_type(value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _check_type(value, arg, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"'{key}' has an invalid value {value!r}")
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise ConfigError(f"'{key}' must be a list, got {value!r}")
        return [_check_type(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
    if tp in (int, float) and isinstance(value, str):
        try:  # YAML 1.1 reads 2e4 as a string; people mean the number
            value = float(value.replace("_", ""))
        except ValueError:
            pass
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        if not finite(float(value)):
            raise ConfigError(f"{key} must be a finite number, got {value!r}")
        return float(value)
    if tp is int and isinstance(value, float) and value.is_integer():
        return int(value)  # 1e6 in YAML is a float
    if tp in (int, str, bool) and isinstance(value, tp) and not (tp is int and isinstance(value, bool)):
        return value
    if tp is Any:
        return value
    name = getattr(tp, "__name__", str(tp))
    raise ConfigError(f"'{key}' must be of type {name}, got {value!r}")
