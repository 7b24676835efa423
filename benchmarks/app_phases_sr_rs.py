"""Phase costs of the SR and RS apps in this process, one thread, per model size.

Prints, per app and size, the median pre/infer/post ms over a few requests and the share of
pre-processing in E2E -- the ratio the paper's argument rests on (SR: inference dominates;
RS at small sizes: pre-processing is a large share) -- and, for SR tiny, its inference time
as a fraction of the 1 s target for a 15 s utterance. No asserts: timings on a shared host
are noisy; read the ratios.

    .venv/bin/python benchmarks/app_phases_sr_rs.py [--requests 5] [--sizes-sr tiny,small]
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from deploybench.apps import create_app
from deploybench.datasets.cache import ensure_data


def measure(app_name: str, size: str, data_dir: Path, requests: int) -> dict[str, float]:
    app = create_app(app_name)
    app.load(data_dir, size, "torch", 1)
    ids = list(app.sample_ids())
    app.postprocess(app.infer([app.preprocess(ids[0])]))  # warm-up
    pre, inf, post = [], [], []
    for i in range(requests):
        t0 = time.perf_counter()
        x = app.preprocess(ids[i % len(ids)])
        t1 = time.perf_counter()
        y = app.infer([x])
        t2 = time.perf_counter()
        app.postprocess(y)
        t3 = time.perf_counter()
        pre.append(t1 - t0), inf.append(t2 - t1), post.append(t3 - t2)
    ms = lambda v: statistics.median(v) * 1e3  # noqa: E731
    return {"pre": ms(pre), "infer": ms(inf), "post": ms(post)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=5)
    parser.add_argument("--sizes-sr", default="tiny,small")
    parser.add_argument("--sizes-rs", default="tiny,debug")
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        for app_name, sizes in (("sr", args.sizes_sr), ("rs", args.sizes_rs)):
            data = ensure_data(create_app(app_name), 4, 0, out_dir=Path(tmp) / app_name)
            for size in sizes.split(","):
                r = measure(app_name, size, data, args.requests)
                e2e = r["pre"] + r["infer"] + r["post"]
                line = (f"{app_name} {size:6} pre {r['pre']:8.2f} ms  infer {r['infer']:9.2f} ms  "
                        f"post {r['post']:6.3f} ms  pre/E2E {r['pre'] / e2e:5.2f}")
                if app_name == "sr" and size == "tiny":
                    line += f"  infer/1s-target {r['infer'] / 1000:5.3f}"
                print(line, flush=True)


if __name__ == "__main__":
    main()
