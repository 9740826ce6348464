"""CARE's reach failure (issue 22): what each probe run and the committed CARE and MT-SAC rows
logged, side by side. Run from the repository root:

    python docs/results/mt10-care-probe/summarise.py [--per-seed] [RUN_FOLDER ...]

Default folders: docs/results/mt10/{mtsac,care} and docs/results/mt10-care-probe/*. Per method
(seeds pooled, mean over seeds): final evaluation success on reach-v3 and the mean over tasks;
training episode success on reach-v3 over the run; and at the end of training (last 30k steps)
the critic's per-task gradient norm on the shared parameters (reach-v3, drawer-close-v3, and
the largest over the median), the critic loss, reach's per-task critic loss and Q mean, the
critics' mean context cosine, and the mixture/context norms of reach vs the median task."""

from __future__ import annotations

import statistics
import sys
from collections import defaultdict
from pathlib import Path

from mtrl.training.logger import read_metrics

ROOT = Path("docs/results")
REACH, DRAWER = "reach-v3", "drawer-close-v3"


def late_mean(records: list[dict], key: str, from_step: int) -> float | None:
    values = [r[key] for r in records if r.get(key) is not None and r["step"] >= from_step]
    return statistics.fmean(values) if values else None


def summarise_run(run: Path) -> dict[str, float | None]:
    records = read_metrics(run)
    last = max(r["step"] for r in records)
    final = [r for r in records if "eval/success_mean" in r][-1]
    tasks = sorted(k.split("/", 2)[2] for k in final if k.startswith("eval/success/"))
    start = last - 30_000
    norms = {t: late_mean(records, f"conflict/critic/grad_norm/{t}", start) for t in tasks}
    known = [v for v in norms.values() if v is not None]
    out = {
        "final_reach": final[f"eval/success/{REACH}"],
        "final_mean": final["eval/success_mean"],
        "train_reach": late_mean(records, f"train/episode_success/{REACH}", 0),
        "grad_reach": norms.get(REACH),
        "grad_drawer": norms.get(DRAWER),
        "grad_max_over_median": max(known) / statistics.median(known) if known else None,
        "grad_top_share": max(known) / sum(known) if known else None,
        "grad_reach_share": norms[REACH] / sum(known) if known and norms.get(REACH) else None,
        "critic_loss": late_mean(records, "loss/critic", start),
        "loss_reach": late_mean(records, f"per_task/critic_loss/{REACH}", start),
        "q_reach": late_mean(records, f"per_task/q_mean/{REACH}", start),
        "context_cosine": late_mean(records, "care/critic/context_cosine_mean", start),
    }
    first = next((r for r in records if f"care/critic/context_norm/{REACH}" in r), None)
    for name in ("mixture_norm", "context_norm"):
        per_task = {t: late_mean(records, f"care/critic/{name}/{t}", start) for t in tasks}
        if per_task.get(REACH) is not None:
            out[f"{name}_reach_over_median"] = per_task[REACH] / statistics.median(v for v in per_task.values() if v)
            # the critic's input scale: where it started (first log) and where it ended, reach and the largest task
            out[f"{name}_start"] = statistics.fmean(first[f"care/critic/{name}/{t}"] for t in tasks)
            out[f"{name}_reach"] = per_task[REACH]
            out[f"{name}_max"] = max(v for v in per_task.values() if v is not None)
    return out


def main(folders: list[str], per_seed: bool = False) -> None:
    if not folders:
        folders = [
            str(ROOT / "mt10" / "mtsac"),
            str(ROOT / "mt10" / "care"),
            *sorted(str(p) for p in (ROOT / "mt10-care-probe").iterdir() if p.is_dir()),
        ]
    rows: dict[str, list[dict]] = defaultdict(list)
    for folder in folders:
        for run in sorted(Path(folder).glob("seed*")):
            if (run / "metrics.jsonl").is_file():
                key = f"{Path(folder).name}/{run.name}" if per_seed else Path(folder).name
                rows[key].append(summarise_run(run))
    keys = list(dict.fromkeys(k for runs in rows.values() for r in runs for k in r))
    print("method", "seeds", *keys, sep="\t")
    for method, runs in rows.items():
        cells = []
        for k in keys:
            values = [r.get(k) for r in runs if r.get(k) is not None]
            cells.append(f"{statistics.fmean(values):.3g}" if values else "-")
        print(method, len(runs), *cells, sep="\t")


if __name__ == "__main__":
    args = sys.argv[1:]
    main([a for a in args if a != "--per-seed"], per_seed="--per-seed" in args)
