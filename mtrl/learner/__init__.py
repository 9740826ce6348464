"""The SAC learner and its multi-task levers: the agent interface, replay, the update, gradient-conflict
aggregation, task weighting, reward scaling, soft sharing and distillation."""
