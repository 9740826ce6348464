"""One MT10-sized layer matmul (1280 x 400 x 400) on the CPU, float32 in three forms and
bfloat16: why the float32 update is matmul-bound and what bfloat16 buys.

    python benchmarks/matmul.py [--repeats 200]

Prints one JSON object with microseconds per matmul.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

BATCH, WIDTH = 1280, 400


def microseconds(fn, repeats: int) -> float:
    for _ in range(10):
        fn()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()
    torch.manual_seed(0)
    x, w, b = torch.randn(BATCH, WIDTH), torch.randn(WIDTH, WIDTH), torch.randn(WIDTH)
    x16, w16, b16 = x.bfloat16(), w.bfloat16(), b.bfloat16()
    times = {
        "float32_addmm": microseconds(lambda: torch.addmm(b, x, w), args.repeats),
        "float32_linear": microseconds(lambda: torch.nn.functional.linear(x, w, b), args.repeats),
        "float32_baddbmm_1_member": microseconds(lambda: torch.baddbmm(b[None, None], x[None], w[None]), args.repeats),
        "bfloat16_addmm": microseconds(lambda: torch.addmm(b16, x16, w16), args.repeats),
    }
    print(
        json.dumps(
            {
                "benchmark": "matmul",
                "shape": [BATCH, WIDTH, WIDTH],
                "threads": torch.get_num_threads(),
                "microseconds": {k: round(v) for k, v in times.items()},
                "bfloat16_speedup": round(times["float32_addmm"] / times["bfloat16_addmm"], 2),
            }
        )
    )


if __name__ == "__main__":
    main()
