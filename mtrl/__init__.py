"""mtrl: multi-task reinforcement learning for robot manipulation (Meta-World v3)."""

__version__ = "0.1.0"
