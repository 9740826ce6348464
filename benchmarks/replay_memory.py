"""Replay memory per transition for Meta-World sizes (MT10, MT50) and the toy suite.

    python benchmarks/replay_memory.py

Prints one JSON object. Goal: <= 350 bytes per Meta-World transition.
"""

from __future__ import annotations

import json

from mtrl.replay import MultiTaskReplay


def main() -> None:
    out = {"benchmark": "replay_memory"}
    for name, tasks, obs_dim, act_dim in (("mt10", 10, 39, 4), ("mt50", 50, 39, 4), ("toy", 4, 2, 2)):
        replay = MultiTaskReplay(tasks, 16, obs_dim, act_dim)
        out[f"{name}_bytes_per_transition"] = replay.bytes_per_transition
        out[f"{name}_gib_at_1m_per_task"] = round(replay.bytes_per_transition * tasks * 1_000_000 / 2**30, 2)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
