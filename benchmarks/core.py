"""Core benchmarks: each figure is a ratio against the naive way, measured in the same run.

    python benchmarks/core.py            # full sizes (1,024 networks)
    python benchmarks/core.py --quick    # smaller, for a smoke run

Prints tables and writes ``benchmarks/results/core.json``.

``ws(x)`` is measured over the number of inputs N (and thread counts, ``--threads``):
the loop over ``nn.Module``s costs a fixed Python/dispatch overhead per network and
layer, so at small N it is overhead-bound and ``ws(x)`` wins by a wide margin; at large
N both do the same multiply-adds and become compute-bound, so the ratio must fall. The
table shows the achieved GFLOP/s of both sides (matmul/conv FLOPs, 2 per multiply-add)
so that the reader sees where the ratio comes from.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Callable

import torch
from torch import nn

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))
sys.path.insert(0, str(ROOT))

from wspace import WeightSpace, spec_from_module  # noqa: E402
from wspace.graph import clear_cache, to_graph  # noqa: E402
from _timing import best_time, best_times  # noqa: E402  (benchmarks/ is on sys.path)


def mlp_2_32_32_1() -> nn.Module:
    return nn.Sequential(nn.Linear(2, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 1))


def small_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 8, 3), nn.ReLU(), nn.Conv2d(8, 16, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(16, 10),
    )


def bench_to_graph(n: int) -> list[dict]:
    from torch_geometric.data import Batch, Data

    ws = WeightSpace.init(spec_from_module(mlp_2_32_32_1()), n, generator=torch.Generator().manual_seed(0))
    spec = ws.spec

    def naive() -> Batch:
        # the usual way: one Data per network, edges built layer by layer, then Batch.from_data_list
        datas = []
        for b in range(n):
            xs, eis, eas = [torch.zeros(spec.in_features)], [], []
            offset_in, offset_out = 0, spec.in_features
            for layer in spec.layers:
                w = ws.tensors[layer.weight][b]
                out_f, in_f = w.shape
                src = torch.arange(in_f).repeat(out_f) + offset_in
                dst = torch.arange(out_f).repeat_interleave(in_f) + offset_out
                eis.append(torch.stack([src, dst]))
                eas.append(w.reshape(-1, 1))
                xs.append(ws.tensors[layer.bias][b])
                offset_in, offset_out = offset_out, offset_out + out_f
            datas.append(Data(x=torch.cat(xs).unsqueeze(1), edge_index=torch.cat(eis, 1), edge_attr=torch.cat(eas)))
        return Batch.from_data_list(datas)

    def cold():
        clear_cache()  # first call for this spec and batch size: index buffers are built too
        return to_graph(ws)

    t_naive = best_time(naive)
    t_fast = best_time(lambda: to_graph(ws))
    t_cold = best_time(cold)
    g, ref = to_graph(ws), naive()
    assert g.num_nodes == ref.num_nodes and g.num_edges == ref.num_edges
    return [
        {"name": f"to_graph, {n} MLPs 2-32-32-1", "baseline_s": t_naive, "wspace_s": t_fast, "speedup": t_naive / t_fast},
        {"name": f"to_graph (cold cache), {n} MLPs", "baseline_s": t_naive, "wspace_s": t_cold, "speedup": t_naive / t_cold},
    ]


def flops_per_network(make: Callable[[], nn.Module], x: torch.Tensor) -> int:
    """Matmul/conv FLOPs of one network on ``x`` (2 per multiply-add; biases and activations not counted)."""
    from torch.utils.flop_counter import FlopCounterMode

    m = make().eval()
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        m(x)
    return int(fc.get_total_flops())


def bench_eval(n: int, make: Callable[[], nn.Module], in_shape: tuple[int, ...], label: str,
               inputs: list[int], threads: list[int], repeat: int) -> list[dict]:
    """``ws(x)`` vs a loop over ``n`` modules, for each number of shared inputs and thread count."""
    torch.manual_seed(0)
    mods = [make().eval() for _ in range(n)]
    ws = WeightSpace.from_modules(mods)
    rows = []
    saved = torch.get_num_threads()
    try:
        for t in threads:
            torch.set_num_threads(t)
            for N in inputs:
                x = torch.rand(N, *in_shape, generator=torch.Generator().manual_seed(N)) * 2 - 1

                @torch.no_grad()
                def loop():
                    return torch.stack([m(x) for m in mods])

                @torch.no_grad()
                def fast():
                    return ws(x)

                t_loop, t_ws = best_times([loop, fast], repeat)
                err = (loop() - fast()).abs().max().item()
                assert err < 1e-4, f"ws(x) differs from the modules by {err}"
                gflop = n * flops_per_network(make, x) / 1e9
                print(f"  {label}: {n} nets, N={N}, {t} thread(s): loop {t_loop * 1e3:.2f} ms, ws(x) {t_ws * 1e3:.2f} ms "
                      f"({t_loop / t_ws:.1f}x)", flush=True)
                rows.append({"model": label, "networks": n, "inputs": N, "threads": t, "loop_s": t_loop,
                             "wspace_s": t_ws, "speedup": t_loop / t_ws, "gflop": gflop,
                             "loop_gflops": gflop / t_loop, "wspace_gflops": gflop / t_ws, "max_abs_err": err})
    finally:
        torch.set_num_threads(saved)
    return rows


def bench_weight_matching(n_pairs: int) -> list[dict]:
    from wspace.align import weight_matching

    rows = []
    for label, make in [("MLP 2-32-32-1", mlp_2_32_32_1), ("CNN 1-8-16 3x3 + GAP + 10", small_cnn)]:
        spec = spec_from_module(make())
        a = WeightSpace.init(spec, n_pairs, generator=torch.Generator().manual_seed(1))
        b = WeightSpace.init(spec, n_pairs, generator=torch.Generator().manual_seed(2))
        t0 = time.perf_counter()
        weight_matching(a, b)
        dt = time.perf_counter() - t0
        rows.append({"name": f"weight_matching, {label}", "pairs": n_pairs, "seconds": dt, "pairs_per_s": n_pairs / dt})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (smoke run)")
    ap.add_argument("--threads", default="1,2", help="comma-separated thread counts for the ws(x) table")
    ap.add_argument("--out", default=str(ROOT / "results" / "core.json"))
    args = ap.parse_args()
    n = 128 if args.quick else 1024
    torch.set_num_threads(max(1, torch.get_num_threads()))
    threads = [int(t) for t in args.threads.split(",") if t.strip()]
    repeat = 3 if args.quick else 7  # best of `repeat`: the machine may be shared

    ratios = bench_to_graph(n)
    evals = [
        *bench_eval(n, mlp_2_32_32_1, (2,), "MLP 2-32-32-1", [1, 16, 64, 256] + ([] if args.quick else [1024]),
                    threads, repeat),
        *bench_eval(n // 4, small_cnn, (1, 8, 8), "CNN 1-8-16 3x3 + GAP + 10", [1, 16, 64] + ([] if args.quick else [256]),
                    threads, repeat),
    ]
    matching = bench_weight_matching(32 if args.quick else 256)

    print(f"\n{'benchmark':<44} {'naive (s)':>10} {'wspace (s)':>11} {'speed-up':>9}")
    for r in ratios:
        print(f"{r['name']:<44} {r['baseline_s']:>10.4f} {r['wspace_s']:>11.4f} {r['speedup']:>8.1f}x")
    print(f"\nws(x) vs a loop over nn.Modules (GFLOP/s: matmul/conv FLOPs per second)")
    print(f"{'model':<28} {'nets':>5} {'N':>5} {'thr':>3} {'loop ms':>9} {'ws ms':>8} {'speed-up':>9} "
          f"{'loop GF/s':>10} {'ws GF/s':>8}")
    for r in evals:
        print(f"{r['model']:<28} {r['networks']:>5} {r['inputs']:>5} {r['threads']:>3} {r['loop_s'] * 1e3:>9.2f} "
              f"{r['wspace_s'] * 1e3:>8.2f} {r['speedup']:>8.1f}x {r['loop_gflops']:>10.1f} {r['wspace_gflops']:>8.1f}")
    print(f"\n{'benchmark':<44} {'pairs':>6} {'seconds':>9} {'pairs/s':>9}")
    for r in matching:
        print(f"{r['name']:<44} {r['pairs']:>6} {r['seconds']:>9.3f} {r['pairs_per_s']:>9.1f}")

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "machine": {"python": platform.python_version(), "torch": torch.__version__, "threads": torch.get_num_threads(),
                    "processor": platform.processor() or platform.machine(),
                    "cpus": os.cpu_count(), "load_avg_at_end": os.getloadavg()},  # > cpus: shared, noisy timings
        "quick": args.quick,
        "ratios": ratios,
        "eval": evals,
        "weight_matching": matching,
        "targets": {"to_graph_speedup": 20.0, "eval_speedup": 20.0},
    }
    out.write_text(json.dumps(result, indent=2))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
