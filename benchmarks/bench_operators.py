"""Resize: forward, adjoint by factors, adjoint by VJP, and the normal operator both ways.

Run: ``pytest benchmarks/bench_operators.py --benchmark-enable``. Each group compares
against the paper's route (Algorithm 2: a fresh autograd graph per adjoint) measured in
the same run; the summary at the end prints the speed-up factors.
"""

import pytest
import torch

import linops

SIZES = [(64, 32), (256, 128)]
BATCH = (64, 3)


@pytest.fixture(scope="module", params=SIZES, ids=lambda s: f"{s[0]}to{s[1]}")
def case(request):
    n, m = request.param
    g = torch.Generator().manual_seed(0)
    R = linops.Resize((3, n, n), (m, m))
    x = torch.randn(*BATCH, n, n, generator=g)
    y = torch.randn(*BATCH, m, m, generator=g)
    # warm the caches (factors, linearised pullback) outside the timed region
    R.apply_adjoint(y[:1])
    R.apply_adjoint_vjp(y[:1])
    return f"{n}to{m}", R, x, y


def _tag(benchmark, group, baseline):
    benchmark.group = group
    benchmark.extra_info["baseline"] = baseline


def test_forward(benchmark, case):
    name, R, x, _ = case
    _tag(benchmark, f"forward {name}", None)
    benchmark(R.apply, x)


def test_adjoint_fresh_graph_vjp(benchmark, case):
    name, R, _, y = case
    _tag(benchmark, f"adjoint {name}", None)
    benchmark(R._vjp.fresh_graph, y.reshape(-1, *R.out_shape))


def test_adjoint_cached_vjp(benchmark, case):
    name, R, _, y = case
    _tag(benchmark, f"adjoint {name}", f"test_adjoint_fresh_graph_vjp[{name}]")
    benchmark(R.apply_adjoint_vjp, y)


def test_adjoint_factors(benchmark, case):
    name, R, _, y = case
    _tag(benchmark, f"adjoint {name}", f"test_adjoint_fresh_graph_vjp[{name}]")
    out = benchmark(R.apply_adjoint, y)
    # same operator as the reference route, to float32 rounding
    torch.testing.assert_close(out, R.apply_adjoint_vjp(y), rtol=0, atol=1e-5)


def test_normal_fresh_graph_vjp(benchmark, case):
    name, R, x, _ = case
    _tag(benchmark, f"R^T R {name}", None)
    benchmark(lambda: R._vjp.fresh_graph(R.apply(x).reshape(-1, *R.out_shape)))


def test_normal_factors(benchmark, case):
    name, R, x, _ = case
    _tag(benchmark, f"R^T R {name}", f"test_normal_fresh_graph_vjp[{name}]")
    benchmark(lambda: R.apply_adjoint(R.apply(x)))
