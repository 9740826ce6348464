"""Typed run configuration: YAML file + dotted overrides -> validated dataclasses.

One flat-ish tree of dataclasses, no interpolation and no includes, so a config file
reads as the full set of knobs. The ``env``, ``agent`` and ``scheduler`` sections are
typed by whatever the registry says the chosen suite / agent / scheduler accepts.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from mtrl import registry
from mtrl.conflict import METHODS, ConflictConfig, require
from mtrl.task_weighting import TASK_WEIGHTINGS
from mtrl.errors import (  # noqa: F401  (ConfigError: re-exported)
    ConfigError,
    at_least,
    check_values,
    did_you_mean,
    finite,
    in_unit_interval,
    one_of,
    or_null,
    positive,
)


@dataclass
class RunConfig:
    """Where the run lives. An empty ``dir`` means ``runs/<name>-seed<seed>-<time>``."""

    name: str = "run"
    dir: str = ""
    wandb: bool = False  # also log to Weights & Biases (the wandb extra); metrics.jsonl and TensorBoard always
    wandb_project: str = "mtrl"
    wandb_mode: str = ""  # online | offline | disabled; empty: WANDB_MODE, else online


@dataclass
class DistillConfig:
    """Distillation from single-task teachers (mtrl/distillation.py): the student's actor loss
    gains weight * KL(teacher || student) on each teacher's task's states."""

    teachers: list[str] = field(default_factory=list)  # run directories of single-task runs (mtrl single-task)
    weight: float = 1.0


@dataclass
class SACConfig:
    """Soft actor-critic hyper-parameters (Meta-World+ MT-SAC defaults)."""

    gamma: float = 0.99
    tau: float = 0.005  # target networks' Polyak rate
    encoder_tau: float | None = None  # the target encoder's rate; None: tau
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    alpha_lr: float = 3e-4
    initial_alpha: float = 1.0
    target_entropy: float | None = None  # None: -|A|
    max_grad_norm: float | None = 1.0  # None: no clipping
    # Meta-World+'s use_task_weights: each task's critic and actor losses weighted by
    # softmax(-log alpha) * T, so tasks whose policy has become confident weigh more.
    task_weights: bool = False
    # Per-task loss weights from the critic's per-task losses (mtrl/task_weighting.py):
    # none | inverse_size | uncertainty (Kendall et al. 2018) | famo (Liu et al. 2023).
    # Multiplies sac.task_weights' when both are on.
    task_weighting: str = "none"
    task_weighting_lr: float = 0.025  # Adam's rate for uncertainty's log-variances / FAMO's logits (FAMO's default)
    # False: sac.task_weighting's weights scale only the critic's terms and the actor's stay
    # equal per sample (an ablation: weights from TD losses need not say how much a task's
    # policy should train).
    task_weighting_actor: bool = True
    # bfloat16: hidden-layer matmuls of the update under autocast (updates 2.5x faster on a
    # CPU with AVX512-BF16, see docs/PERFORMANCE.md); output layers, losses and Adam stay float32.
    # auto: bfloat16 where the hardware runs it fast (AVX512-BF16/AMX CPU, bf16 CUDA device),
    # else float32 (mtrl/hardware.py); the run's config.yaml records the choice.
    precision: str = "auto"  # auto | float32 | bfloat16
    # torch.compile the networks' forward passes (and so their backward). Measured slower on
    # the 2-core CPU (0.92x) and not yet on a GPU; off by default.
    compile: bool = False
    # PaCo's mask_extreme_task: a task whose mean critic loss in a batch exceeds this (or is
    # not finite) is left out of that update and its task-specific parameters are reset.
    # None: only non-finite losses mask.
    task_loss_threshold: float | None = 3e3
    weight_decay: float = 0.0  # > 0: AdamW with this decoupled decay for actor and critics (BRC: 1e-4)
    # returns: each task's rewards divided by a running estimate of its return scale (BRC's
    # per-task reward normalisation, mtrl/reward_scale.py) so that scaled soft returns stay
    # within +-reward_scale_bound; none: raw rewards.
    reward_scaling: str = "none"  # none | returns
    reward_scale_bound: float = 10.0
    # n-step returns (FastTD3 uses 3): the critic's target sums n rewards and bootstraps from
    # the state n steps on with gamma^n; shorter at an episode's end (mtrl/replay.py).
    n_step: int = 1


@dataclass
class TrainConfig:
    """Collection, update and bookkeeping schedule. Step counts are environment steps
    summed over all tasks (one vector step of E slots counts E)."""

    total_steps: int = 1_000_000
    num_slots: int | None = None  # environment slots E; None: one per task
    warmup_steps: int = 10_000  # uniform-random actions before the first update
    batch_per_task: int = 128
    batch_allocation: str = "equal"  # equal | scheduler (per-task batch shares follow the scheduler)
    updates_per_step: int = 1  # gradient updates per vector step
    buffer_per_task: int = 1_000_000
    eval_every: int = 100_000  # 0: only the final evaluation
    eval_episodes: int = 50  # per task, at each evaluation during training (goals rotate between them)
    final_eval_episodes: int = 50  # per task, at the end: Meta-World's protocol, one per each of its 50 goals
    eval_stop_on_success: bool = True  # Meta-World+: an episode's outcome is fixed once it succeeds
    log_every: int = 10_000  # 0: no training logs
    checkpoint_every: int = 100_000  # 0: only the final checkpoint
    keep_checkpoints: int = 2  # newest checkpoint files kept (at least 1)
    # Stop the run when this many updates in a row had to skip a non-finite step or mask a
    # task whose critic loss exploded (sac.task_loss_threshold).
    divergence_patience: int = 100
    save_replay: bool = False  # include the replay buffer in checkpoints (exact resume, large files)
    progress: bool = True
    # torch's CPU threads (torch.set_num_threads) for this run; null: torch's default (one per
    # core, or OMP_NUM_THREADS). One measured fastest here for mtrl's small networks, alone and
    # beside other jobs (docs/PERFORMANCE.md); `mtrl sweep` sets it to --cpus-per-trial.
    threads: int | None = 1


@dataclass
class Config:
    """The whole run. ``env``/``agent``/``scheduler`` are the registered components' configs."""

    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    resume: bool = False
    run: RunConfig = field(default_factory=RunConfig)
    env: Any = field(default=None, metadata={"kind": "suite", "selector": "suite", "default": "toy"})
    agent: Any = field(default=None, metadata={"kind": "agent", "selector": "name", "default": "mtsac"})
    scheduler: Any = field(
        default=None, metadata={"kind": "scheduler", "selector": "name", "default": "round_robin"}
    )
    sac: SACConfig = field(default_factory=SACConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    conflict: ConflictConfig = field(default_factory=ConflictConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)


DEVICES = ("auto", "cpu", "cuda")
REWARD_SCALINGS = ("none", "returns")

PRECISIONS = ("auto", "float32", "bfloat16")
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
            selector_changed = any(
                s in value and s in old and value[s] != old[s] for s in ("suite", "name")
            )
            out[key] = dict(value) if selector_changed else merge(old, value)
        else:
            out[key] = value
    return out


def load_config(name_or_path: str, overrides: list[str] | None = None) -> Config:
    """Read a config file, apply dotted overrides and validate everything."""
    path = find_config(name_or_path)
    data = read_yaml(path)
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
    require(cfg.conflict.method)  # a method from an optional package: say which extra, now
    return cfg


def check_value_support(cfg: Config) -> None:
    """Combinations of valid values that cannot work. ``sac.task_weighting_actor=false``
    needs a ``sac.task_weighting`` to keep off the actor. A categorical critic
    (``agent.v_max``, BRC) must hold the scaled returns: with
    ``sac.reward_scaling=returns`` they reach +-``sac.reward_scale_bound``, and the target
    projection would clip everything beyond the support."""
    if not cfg.sac.task_weighting_actor and cfg.sac.task_weighting == "none":
        raise ConfigError("sac.task_weighting_actor=false keeps sac.task_weighting's weights off the actor, but "
                          "sac.task_weighting=none has none: set sac.task_weighting (one of "
                          f"{', '.join(w for w in TASK_WEIGHTINGS if w != 'none')}) or drop sac.task_weighting_actor=false")
    v_max = getattr(cfg.agent, "v_max", None)
    bound = cfg.sac.reward_scale_bound
    if v_max is not None and cfg.sac.reward_scaling == "returns" and v_max < bound:
        raise ConfigError(f"agent.v_max={v_max:g} is below sac.reward_scale_bound={bound:g}: the critics' support "
                          f"would clip the scaled returns; set agent.v_max={bound:g} or sac.reward_scale_bound={v_max:g}")


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
        ("sac.initial_alpha", s.initial_alpha, positive, "positive"),
        ("sac.max_grad_norm", s.max_grad_norm, or_null(positive), "positive (or null: no clipping)"),
        ("sac.task_loss_threshold", s.task_loss_threshold, or_null(positive), "positive (or null: mask only non-finite losses)"),
        ("sac.precision", s.precision, *one_of(PRECISIONS)),
        ("sac.n_step", s.n_step, at_least(1), "at least 1 (1: one-step targets)"),
        ("distill.weight", cfg.distill.weight, at_least(0), "at least 0"),
        ("sac.task_weighting", s.task_weighting, *one_of(TASK_WEIGHTINGS)),
        ("sac.task_weighting_lr", s.task_weighting_lr, positive, "positive"),
        ("sac.weight_decay", s.weight_decay, at_least(0), "at least 0 (0: Adam without decay)"),
        ("sac.reward_scaling", s.reward_scaling, *one_of(REWARD_SCALINGS)),
        ("sac.reward_scale_bound", s.reward_scale_bound, positive, "positive"),
        ("conflict.method", c.method, *one_of(METHODS)),
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


# --- validation -------------------------------------------------------------------------


def build_dataclass(cls: type, data: Any, prefix: str) -> Any:
    """Validate ``data`` against dataclass ``cls``; ``prefix`` names the section in errors.

    Keys and types are checked here; values, by the dataclass's ``validate()`` method if it
    has one (the components' configs do: it raises :class:`ConfigError`), called once built.
    """
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"'{prefix.rstrip('.')}' must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in data:
        if not isinstance(key, str):
            raise ConfigError(f"config key {key!r}{f' under {prefix.rstrip(chr(46))!r}' if prefix else ''} is not a name; "
                              "keys are words such as total_steps")
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
