"""Distillation from single-task teachers (Actor-Mimic, Parisotto et al. 2016; Distral, Teh
et al. 2017): the student's actor loss gains

    distill.weight * KL(pi_teacher(.|s) || pi_student(.|s, task))

on the states of each teacher's task drawn from the student's replay (the teacher's task's
samples of every batch). Both policies are tanh-squashed Gaussians; tanh is a bijection, so
the KL equals the closed-form KL of the Gaussians before the squash.

Teachers are run directories (``mtrl single-task``'s, or any run on one task): the latest
checkpoint that verifies of each is loaded, checked (same suite, one task that the student
trains, same observation and action sizes) and frozen.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from mtrl import registry
from mtrl.builders import agent_from_checkpoint
from mtrl.errors import ConfigError
from mtrl.learner.agent import Agent, EnvSpec
from mtrl.run_files import check_summary, read_checkpoint, read_run


def gaussian_kl(
    mean_p: torch.Tensor, log_std_p: torch.Tensor, mean_q: torch.Tensor, log_std_q: torch.Tensor
) -> torch.Tensor:
    """KL(N(mean_p, std_p) || N(mean_q, std_q)) of diagonal Gaussians, summed over the last axis."""
    var_p, var_q = (2 * log_std_p).exp(), (2 * log_std_q).exp()
    return (log_std_q - log_std_p + (var_p + (mean_p - mean_q) ** 2) / (2 * var_q) - 0.5).sum(-1)


@dataclass
class Teacher:
    task: int  # the student's index of the teacher's task
    agent: Agent
    run_dir: Path


class Teachers:
    """Frozen single-task teachers, indexed by the student's task."""

    def __init__(self, teachers: list[Teacher], num_tasks: int):
        self.teachers = teachers
        self.num_tasks = num_tasks

    def taught(self, task: torch.Tensor) -> torch.Tensor:
        """(B,) bool: the samples whose task has a teacher."""
        return torch.isin(task, torch.as_tensor([t.task for t in self.teachers], device=task.device))

    def kl(self, student: Agent, obs: torch.Tensor, task: torch.Tensor) -> torch.Tensor:
        """(B,) KL(teacher || student) for samples whose task has a teacher, 0 elsewhere;
        differentiable in the student's actor (and the encoder its loss trains)."""
        out = obs.new_zeros(obs.shape[0])
        for teacher in self.teachers:  # one frozen model each: a loop over teachers, not a per-sample one
            rows = torch.nonzero(task == teacher.task).squeeze(-1)
            if not len(rows):
                continue
            o, t = obs[rows], task[rows]
            with torch.no_grad():
                zero = torch.zeros_like(t)  # the teacher's only task
                mean_t, log_std_t = teacher.agent.actor(teacher.agent.actor_features(o, zero), zero)
            mean_s, log_std_s = student.actor(student.actor_features(o, t), t)
            out = out.index_put(
                (rows,), gaussian_kl(mean_t.float(), log_std_t.float(), mean_s.float(), log_std_s.float())
            )
        return out


def load_teachers(paths: list[str], spec: EnvSpec, device: torch.device) -> Teachers:
    """Load and check the teachers; one-line ConfigError naming the teacher otherwise."""
    teachers, seen = [], {}
    for raw in paths:
        run_dir = Path(raw)
        cfg = read_run(run_dir)
        path, state, _ = read_checkpoint(run_dir, None, device)
        check_summary(state, path)
        where = f"teacher '{run_dir}'"
        if cfg.env.suite != spec.suite:
            raise ConfigError(
                f"{where} was trained on suite '{cfg.env.suite}', the student on '{spec.suite}'; "
                "give teachers of the student's suite"
            )
        tasks = list(state.get("task_names") or [])
        if len(tasks) != 1:
            raise ConfigError(
                f"{where} was trained on {len(tasks)} tasks; a teacher is a single-task run "
                "(mtrl single-task CONFIG --seeds N makes them)"
            )
        if tasks[0] not in spec.task_names:
            raise ConfigError(
                f"{where}'s task '{tasks[0]}' is not one of the student's tasks ({', '.join(spec.task_names)})"
            )
        sizes = state.get("spec") or {}
        if (sizes.get("obs_dim"), sizes.get("act_dim")) != (spec.obs_dim, spec.act_dim):
            raise ConfigError(
                f"{where} has observations/actions of size {sizes.get('obs_dim')}/{sizes.get('act_dim')}, "
                f"the student {spec.obs_dim}/{spec.act_dim}"
            )
        if tasks[0] in seen:
            raise ConfigError(f"{where} and '{seen[tasks[0]]}' both teach '{tasks[0]}'; give one teacher per task")
        seen[tasks[0]] = run_dir
        suite_cls = registry.get("suite", cfg.env.suite).target
        teacher_spec = EnvSpec(
            spec.obs_dim,
            spec.act_dim,
            (tasks[0],),
            tuple(sizes.get("descriptions") or ("",)),
            cfg.env.suite,
            getattr(suite_cls, "embedding_file", None),
        )
        misfit = f"{where}'s checkpoint does not fit its own config"
        agent = agent_from_checkpoint(cfg, teacher_spec, state, device, misfit)
        agent.requires_grad_(False)
        teachers.append(Teacher(spec.task_names.index(tasks[0]), agent, run_dir))
    return Teachers(teachers, len(spec.task_names))
