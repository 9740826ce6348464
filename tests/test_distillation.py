"""Distillation from single-task teachers: the KL, its effect, and the teachers' checks."""

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from mtrl.cli import main
from mtrl.config import SACConfig
from mtrl.learner.agent import Agent, OneHotTaskEncoder
from mtrl.learner.distillation import Teacher, Teachers, gaussian_kl
from mtrl.learner.replay import Batch
from mtrl.learner.sac import SAC
from mtrl.networks.ensemble import TanhGaussianActor, TwinQ
from mtrl.training.logger import read_metrics

from conftest import TINY_TOY


def test_gaussian_kl_matches_torch_distributions():
    torch.manual_seed(0)
    mp, lp, mq, lq = (torch.randn(5, 3) for _ in range(4))
    expected = kl_divergence(Normal(mp, lp.exp()), Normal(mq, lq.exp())).sum(-1)
    assert torch.allclose(gaussian_kl(mp, lp, mq, lq), expected, atol=1e-5)


def agent(num_tasks: int, seed: int) -> Agent:
    torch.manual_seed(seed)
    enc = OneHotTaskEncoder(3, num_tasks)
    return Agent(
        enc,
        TanhGaussianActor.mlp(in_dim=enc.out_dim, act_dim=2, hidden=[16]),
        TwinQ.mlp(in_dim=enc.out_dim, act_dim=2, hidden=[16]),
    )


def test_distillation_pulls_the_student_toward_a_fixed_teacher_on_its_task_only():
    teacher = agent(1, seed=1).requires_grad_(False)
    teachers = Teachers([Teacher(task=1, agent=teacher, run_dir=None)], num_tasks=2)
    g = torch.Generator().manual_seed(2)
    batch = Batch(
        torch.randn(32, 3, generator=g),
        torch.rand(32, 2, generator=g) * 2 - 1,
        torch.randn(32, generator=g),
        torch.randn(32, 3, generator=g),
        torch.zeros(32),
        torch.arange(2).repeat(16),
    )

    def kl_after(weight: float) -> tuple[float, torch.Tensor]:
        student = agent(2, seed=3)
        sac = SAC(student, 2, 2, SACConfig(actor_lr=3e-3), teachers=teachers, distill_weight=weight)
        for _ in range(60):
            metrics = sac.update(batch)
        kl = teachers.kl(student, batch.obs, batch.task).detach()
        assert torch.all(kl[batch.task == 0] == 0)  # task 0 has no teacher
        return float(kl[batch.task == 1].mean()), metrics

    start = float(teachers.kl(agent(2, seed=3), batch.obs, batch.task).detach()[batch.task == 1].mean())
    with_distill, metrics = kl_after(10.0)
    without, _ = kl_after(0.0)
    assert with_distill < 0.3 * start and with_distill < 0.5 * without, (start, with_distill, without)
    assert "distill/kl" in metrics


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory):
    """A single-task toy run on reach-north (the 4-task suite's second task)."""
    run_dir = tmp_path_factory.mktemp("teacher") / "north"
    assert main(["train", "toy-mtsac", *TINY_TOY, "env.num_tasks=1", "env.goal_angles=[90]", f"run.dir={run_dir}"]) == 0
    return run_dir


def test_a_student_trains_with_a_teacher_and_logs_the_kl(teacher_run, tmp_path):
    run_dir = tmp_path / "student"
    assert (
        main(
            [
                "train",
                "toy-mtsac",
                *TINY_TOY,
                f"distill.teachers=[{teacher_run}]",
                "distill.weight=2",
                f"run.dir={run_dir}",
            ]
        )
        == 0
    )
    kls = [r["distill/kl"] for r in read_metrics(run_dir) if "distill/kl" in r]
    assert kls and all(k >= 0 for k in kls)


@pytest.mark.parametrize(
    "make_bad, message",
    [
        (lambda teacher, toy: [toy], "was trained on 4 tasks"),
        (lambda teacher, toy: [teacher, teacher], "both teach 'reach-north'"),
        (lambda teacher, toy: [str(teacher) + "-missing"], "is not a run directory"),
    ],
)
def test_bad_teachers_are_one_line_errors(make_bad, message, teacher_run, toy_run, tmp_path, capsys):
    teachers = ",".join(map(str, make_bad(teacher_run, toy_run)))
    run_dir = tmp_path / "student"
    assert main(["train", "toy-mtsac", *TINY_TOY, f"distill.teachers=[{teachers}]", f"run.dir={run_dir}"]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not run_dir.exists()


def test_a_teacher_of_a_task_the_student_lacks_is_refused(tmp_path, capsys):
    teacher = tmp_path / "diagonal"
    assert main(["train", "toy-mtsac", *TINY_TOY, "env.num_tasks=1", "env.goal_angles=[45]", f"run.dir={teacher}"]) == 0
    capsys.readouterr()
    assert main(["train", "toy-mtsac", *TINY_TOY, f"distill.teachers=[{teacher}]", f"run.dir={tmp_path / 's'}"]) == 2
    assert "is not one of the student's tasks" in capsys.readouterr().err
