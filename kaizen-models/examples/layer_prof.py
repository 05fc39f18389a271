#!/usr/bin/env python3
"""PyTorch counterpart of `cargo run --release -p kaizen-models --example layer_prof -- W B REPS`:
the same ResNet-18 conv and BN(+ReLU) shapes, timed one op at a time on CPU (2 threads by default).

    ~/.venv-torch/bin/python kaizen-models/examples/layer_prof.py 16 64 7
"""
import sys
import time

import torch
import torch.nn.functional as F


def median_ms(reps, f):
    f()
    ts = []
    for _ in range(reps):
        s = time.perf_counter()
        f()
        ts.append((time.perf_counter() - s) * 1e3)
    return min(ts)  # best of reps: the least noisy figure on a shared machine


def main():
    width = int(sys.argv[1]) if len(sys.argv) > 1 else 16
    b = int(sys.argv[2]) if len(sys.argv) > 2 else 64
    reps = int(sys.argv[3]) if len(sys.argv) > 3 else 7
    threads = int(sys.argv[4]) if len(sys.argv) > 4 else 2
    torch.set_num_threads(threads)
    convs = [(3, width, 3, 1, 1, 32, 1)]
    cin, hw = width, 32
    for mult, stride in [(1, 1), (2, 2), (4, 2), (8, 2)]:
        cout = width * mult
        if stride == 1:
            convs.append((cin, cout, 3, 1, 1, hw, 4))
        else:
            convs += [(cin, cout, 3, 2, 1, hw, 1), (cin, cout, 1, 2, 0, hw, 1)]
            hw //= 2
            convs.append((cout, cout, 3, 1, 1, hw, 3))
        cin = cout
    print(f"torch ResNet-18 width {width} batch {b} ({torch.get_num_threads()} threads)")
    print(f"{'conv':<28} {'n':>3} {'fwd':>8} {'dx':>8} {'dw':>8} {'GF/s':>7} {'total':>8}")
    grand = 0.0
    with torch.no_grad():
        for ci, co, k, s, p, h, count in convs:
            x = torch.randn(b, ci, h, h)
            w = torch.randn(co, ci, k, k)
            y = F.conv2d(x, w, stride=s, padding=p)
            dy = torch.randn_like(y)
            tf = median_ms(reps, lambda: F.conv2d(x, w, stride=s, padding=p))
            bw = torch.ops.aten.convolution_backward
            args = (dy, x, w, None, [s, s], [p, p], [1, 1], False, [0, 0], 1)
            tx = 0.0 if ci == 3 else median_ms(reps, lambda: bw(*args, [True, False, False]))
            tw = median_ms(reps, lambda: bw(*args, [False, True, False]))
            flop = 2.0 * co * ci * k * k * y.numel() / co
            passes = 2.0 if ci == 3 else 3.0
            gfs = passes * flop / ((tf + tx + tw) * 1e6)
            tot = (tf + tx + tw) * count
            grand += tot
            name = f"{ci}->{co} k{k} s{s} {h}x{h}"
            print(f"{name:<28} {count:>3} {tf:>8.2f} {tx:>8.2f} {tw:>8.2f} {gfs:>7.1f} {tot:>8.2f}")
    print(f"{'bn(+relu)':<28} {'n':>3} {'fwd':>8} {'bwd':>8}")
    bns = [(width, 32, 5)] + [(width * m, h, 5) for m, h in [(2, 16), (4, 8), (8, 4)]]
    for c, h, count in bns:
        x = torch.randn(b, c, h, h, requires_grad=True)
        g = torch.randn(c, requires_grad=True)
        be = torch.randn(c, requires_grad=True)
        dy = torch.randn(b, c, h, h)
        fwd = lambda: F.relu(F.batch_norm(x, None, None, g, be, training=True))
        with torch.no_grad():
            tf = median_ms(reps, fwd)
        def fb():
            y = fwd()
            y.backward(dy)
        tb = median_ms(reps, fb) - tf
        tot = (tf + tb) * count
        grand += tot
        print(f"{f'{c} {h}x{h}':<28} {count:>3} {tf:>8.2f} {tb:>8.2f} {'':>8} {'':>7} {tot:>8.2f}")
    print(f"sum of kernels per step: {grand:.1f} ms")


main()
