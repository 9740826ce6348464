"""Independent random streams of a run, all derived from its one ``seed``.

``numpy.random.SeedSequence(seed).spawn`` gives statistically independent children, so
changing how often one consumer draws (e.g. the scheduler) never shifts another's
numbers (e.g. the goals the environments draw), as a single shared seed would.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

STREAMS = ("torch", "actions", "env", "scheduler", "evaluation")


@dataclass(frozen=True)
class RunSeeds:
    torch: int  # network initialisation, policy noise, replay sampling (torch's global RNG)
    actions: int  # uniform warm-up actions
    env: int  # training environments: goals and starts of each episode
    scheduler: int  # which task each slot runs next
    evaluation: int  # evaluation environments' starts


def run_seeds(seed: int) -> RunSeeds:
    children = np.random.SeedSequence(seed).spawn(len(STREAMS))
    return RunSeeds(*(int(c.generate_state(1, np.uint32)[0]) for c in children))
