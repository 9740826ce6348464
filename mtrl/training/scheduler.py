"""Task schedulers: which task a collector slot runs in its next episode.

``learning_progress`` tracks each task's episode success x in {0, 1} with a fast and a slow
bias-corrected exponential moving average (step sizes a_f > a_s; after the task's n-th
outcome the step is a / (1 - (1 - a)^n), so both start at the first outcome):

    d     = fast - slow                                 (> 0 improving, < 0 forgetting)
    V(n)  = sum_k (u_k - v_k)^2,  u_k = a_f (1-a_f)^k / (1 - (1-a_f)^n),  v_k likewise with a_s
          -> a_f/(2-a_f) + a_s/(2-a_s) - 2 a_f a_s / (1 - (1-a_f)(1-a_s))     (n -> infinity)
    sigma = sqrt(p (1 - p) V(n)),  p = slow                (noise of d if success were constant)
    LP    = max(0, |d| - k sigma)                          (robust, bidirectional progress)
    prob  = (1 - eps) LP / sum(LP) + eps / N,   uniform when every LP is 0

Why: both averages are weighted sums of the same outcomes, d = sum_k (u_k - v_k) x_{n-k},
so for i.i.d. Bernoulli(p) outcomes Var(d) = p (1 - p) V(n) exactly (V(1) = 0: one outcome is
no evidence). A task at a constant 50 % has |d| of order sigma (about 0.045 with the default
rates) at every step; a bare |fast - slow| mistakes that for progress and, normalised, hands
such a task most episodes. Subtracting k = 2 sigma leaves it zero about 95 % of the time, and
then the choice is uniform. A task whose success is really changing keeps |d| well above k
sigma (a linear rise by r per episode gives d = r (1/a_s - 1/a_f) = 133 r at the defaults),
a solved or hopeless task has d = 0, and the absolute value makes forgetting count as
progress too. eps keeps every task sampled, so a stalled task's averages keep updating.

The trainer calls :meth:`Scheduler.next_task` at every episode boundary of a slot and
:meth:`Scheduler.record` with each finished episode's success.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mtrl.errors import ConfigError, at_least, check_values
from mtrl.registry import register
from mtrl.safe_state import check_like


class Scheduler:
    """Base: subclasses implement :meth:`next_task`."""

    def __init__(self, cfg: object, num_tasks: int, num_slots: int, seed: int):
        self.cfg, self.num_tasks, self.num_slots = cfg, num_tasks, num_slots
        self.rng = np.random.default_rng(seed)
        self.episodes = np.zeros(num_tasks, np.int64)  # episodes started per task

    def initial_tasks(self) -> np.ndarray:
        """The first task of every slot."""
        return np.array([self.next_task(s) for s in range(self.num_slots)], np.int64)

    def next_task(self, slot: int) -> int:
        raise NotImplementedError

    def record(self, task: int, success: bool) -> None:
        """A finished episode's outcome (unused by the static schedulers)."""

    def probabilities(self) -> np.ndarray:
        """The current chance of each task for the next episode; also the replay batch
        allocation when ``train.batch_allocation=scheduler``."""
        return np.full(self.num_tasks, 1.0 / self.num_tasks)

    def stats(self) -> dict[str, np.ndarray]:
        """Per-task numbers for the logs."""
        return {"probability": self.probabilities(), "episodes": self.episodes.astype(float)}

    # array attributes a checkpoint must carry; subclasses extend this
    state_arrays: tuple[str, ...] = ("episodes",)

    def state_dict(self) -> dict:
        return {"rng": self.rng.bit_generator.state, **{k: getattr(self, k).copy() for k in self.state_arrays}}

    def load_state_dict(self, state: dict) -> None:
        for key in self.state_arrays:
            check_like(getattr(self, key), state[key], f"scheduler.{key}")
        self.rng.bit_generator.state = state["rng"]
        for key in self.state_arrays:
            setattr(self, key, state[key].copy())


@dataclass
class RoundRobinConfig:
    name: str = "round_robin"
    """The scheduler (mtrl list shows them)."""


@register("scheduler", "round_robin", RoundRobinConfig)
class RoundRobin(Scheduler):
    """Slot s runs tasks s, s+E, s+2E, ... (mod N) in turn; E = N pins one slot per task."""

    state_arrays = ("episodes", "slot_episodes")

    def __init__(self, cfg: object, num_tasks: int, num_slots: int, seed: int):
        super().__init__(cfg, num_tasks, num_slots, seed)
        self.slot_episodes = np.zeros(num_slots, np.int64)

    def next_task(self, slot: int) -> int:
        # The slot's k-th episode runs task (slot + k * E) mod N.
        task = int((slot + self.slot_episodes[slot] * self.num_slots) % self.num_tasks)
        self.slot_episodes[slot] += 1
        self.episodes[task] += 1
        return task


@dataclass
class UniformConfig:
    name: str = "uniform"
    """The scheduler (mtrl list shows them)."""


@register("scheduler", "uniform", UniformConfig)
class Uniform(Scheduler):
    """Every episode's task drawn uniformly at random."""

    def next_task(self, slot: int) -> int:
        task = int(self.rng.integers(self.num_tasks))
        self.episodes[task] += 1
        return task


@dataclass
class LearningProgressConfig:
    name: str = "learning_progress"
    """The scheduler (mtrl list shows them)."""
    fast_rate: float = 0.03
    """a_f: step size of the fast success average (remembers ~1/a_f = 33 of the task's episodes)."""
    slow_rate: float = 0.006
    """a_s: step size of the slow success average (~1/a_s = 167 episodes); 0 < a_s < a_f <= 1."""
    noise_threshold: float = 2.0
    """k: progress counts only beyond k standard deviations of the binomial noise of fast - slow."""
    epsilon: float = 0.2
    """eps: share of episodes spread uniformly over all tasks (every task keeps eps / N)."""

    def validate(self) -> None:
        if not 0 < self.slow_rate < self.fast_rate <= 1:
            raise ConfigError(
                "scheduler.slow_rate and scheduler.fast_rate must satisfy 0 < slow_rate < fast_rate <= 1, "
                f"got {self.slow_rate} and {self.fast_rate}"
            )
        check_values(
            [
                ("scheduler.noise_threshold", self.noise_threshold, at_least(0), "at least 0"),
                ("scheduler.epsilon", self.epsilon, lambda v: 0 <= v <= 1, "in [0, 1]"),
            ]
        )


def ema_difference_variance(fast_rate: float, slow_rate: float, n: np.ndarray | float) -> np.ndarray:
    """Var(fast - slow) / (p (1 - p)) after ``n`` i.i.d. Bernoulli(p) outcomes, for the
    bias-corrected averages of :class:`LearningProgress` (0 for n = 0 and n = 1; the
    stationary value of the module docstring as n -> infinity)."""
    a, b = fast_rate, slow_rate
    n = np.asarray(n, float)
    with np.errstate(divide="ignore", invalid="ignore"):  # a = 1 (log 0) and n = 0 (0 / 0, masked below)
        ca, cb = -np.expm1(n * np.log1p(-a)), -np.expm1(n * np.log1p(-b))  # 1 - (1-a)^n, 1 - (1-b)^n
        log_q = np.log1p(-a) + np.log1p(-b)  # q = (1-a)(1-b)
        fast_sq = a * -np.expm1(2 * n * np.log1p(-a)) / ((2 - a) * ca**2)  # sum of squared fast weights
        slow_sq = b * -np.expm1(2 * n * np.log1p(-b)) / ((2 - b) * cb**2)
        cross = a * b * -np.expm1(n * log_q) / (-np.expm1(log_q) * ca * cb)
        var = fast_sq + slow_sq - 2 * cross
    return np.where(n > 0, np.maximum(var, 0.0), 0.0)  # clip rounding below 0 (n = 1 is exactly 0)


@register("scheduler", "learning_progress", LearningProgressConfig)
class LearningProgress(Scheduler):
    """Episodes go to tasks whose success is changing by more than its binomial noise
    (formulas in the module docstring)."""

    state_arrays = ("episodes", "fast", "slow", "outcomes")

    def __init__(self, cfg: LearningProgressConfig, num_tasks: int, num_slots: int, seed: int):
        super().__init__(cfg, num_tasks, num_slots, seed)  # cfg's values were checked when it was loaded
        self.fast = np.zeros(num_tasks)  # bias-corrected fast success average
        self.slow = np.zeros(num_tasks)  # bias-corrected slow success average
        self.outcomes = np.zeros(num_tasks, np.int64)  # outcomes recorded per task (n)

    def record(self, task: int, success: bool) -> None:
        x = float(success)
        self.outcomes[task] += 1
        n = int(self.outcomes[task])
        # Step a / (1 - (1-a)^n): the bias-corrected average (1 at n = 1, so it starts at the
        # first outcome; then -> a). Early on both averages are close to the plain mean, so
        # a new task shows no fake progress, and its noise is known exactly for every n.
        for average, a in ((self.fast, self.cfg.fast_rate), (self.slow, self.cfg.slow_rate)):
            average[task] += a / (1.0 - (1.0 - a) ** n) * (x - average[task])

    def noise(self) -> np.ndarray:
        """sigma: the standard deviation fast - slow would have if the task's success chance
        were constant at its slow average."""
        # The slow average is the better-evidenced success chance; while the task is changing
        # it is a lagged one, which only matters through p (1 - p), flat near 0.5.
        p = np.clip(self.slow, 0.0, 1.0)
        return np.sqrt(p * (1 - p) * ema_difference_variance(self.cfg.fast_rate, self.cfg.slow_rate, self.outcomes))

    def learning_progress(self) -> np.ndarray:
        """Robust learning progress: max(0, |fast - slow| - k sigma)."""
        return np.maximum(0.0, np.abs(self.fast - self.slow) - self.cfg.noise_threshold * self.noise())

    def probabilities(self) -> np.ndarray:
        lp = self.learning_progress()
        total = lp.sum()
        # Proportional to the progress beyond noise (no temperature: its scale would have to
        # match that of LP, which changes with the rates); eps / N keeps every task sampled.
        if total <= 0:  # no task beyond its noise: uniform
            return np.full(self.num_tasks, 1.0 / self.num_tasks)
        return (1 - self.cfg.epsilon) * lp / total + self.cfg.epsilon / self.num_tasks

    def next_task(self, slot: int) -> int:
        task = int(self.rng.choice(self.num_tasks, p=self.probabilities()))
        self.episodes[task] += 1
        return task

    def stats(self) -> dict[str, np.ndarray]:
        return {**super().stats(), "learning_progress": self.learning_progress(), "noise": self.noise()}

    def load_state_dict(self, state: dict) -> None:
        if "outcomes" not in state:  # a checkpoint from before the noise estimate: n ~ episodes run
            state = {**state, "outcomes": np.where(state["seen"], state["episodes"], 0).astype(np.int64)}
        super().load_state_dict(state)
