"""The training run around the learner: the collect -> learn -> evaluate/checkpoint/log loop, its state,
the task scheduler, the evaluation protocol, checkpoints, logging and progress."""
