"""mtrl: multi-task reinforcement learning for robot manipulation (Meta-World v3)."""

__version__ = "0.1.0"


def __getattr__(name: str):
    """``mtrl.load`` (and ``mtrl.TrainedPolicy``) on first use, so that ``import mtrl`` stays cheap."""
    if name in ("load", "TrainedPolicy"):
        from mtrl import policy

        return getattr(policy, name)
    raise AttributeError(f"module 'mtrl' has no attribute '{name}'")
