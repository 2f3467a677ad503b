"""The CUDA backend without a GPU.

* In the normal process: every CUDA kernel compiles to PTX for Hopper (sm_90) and
  Ampere (sm_80) in float32 and float64, for one to three hidden layers, with its
  own options (launch bounds, fast math); ``ptxas -v`` then reports its registers,
  spills and stack, and the test fails where a block of the kernel's declared size
  would not fit an SM's 65,536 registers, where it spills, or where a kernel has no
  launch bound. (A real H200 refused kernels that the simulator had run.)
* In the simulator process (``NUMBA_ENABLE_CUDASIM=1``, or on a real GPU with
  ``NUMBA_MLP_TEST_CUDA=1``): the model on ``backend="cuda"`` trains to the cpu
  backend's weights, per-sample and minibatch, and the fused kernels' multi-slice
  and multi-block paths match the reference.
  (``tests/test_kernels.py`` checks each op against the reference there.)
"""

import importlib
import pathlib
import pkgutil
import re
import shutil
import subprocess

import numpy as np
import pytest

from tests.conftest import CUDA_UNDER_TEST, SIMULATOR, last_update_overflows

cuda_ops = pytest.importorskip("kernels.cuda")
if cuda_ops.cuda is None:
    pytest.skip("numba-cuda is not installed", allow_module_level=True)

#: Registers of one SM (sm_80 and sm_90): a block's threads times its kernel's registers must fit.
REGISTERS_PER_SM = 65536


def kernel_signatures(dtype, n_layers):
    """Argument types of every kernel, as the launchers call them."""
    from numba import types

    real = types.float32 if dtype == np.float32 else types.float64
    A1, A2 = types.Array(real, 1, "C"), types.Array(real, 2, "C")
    I1, F1 = types.Array(types.int64, 1, "C"), types.Array(types.float64, 1, "C")
    sizes = types.UniTuple(types.int64, n_layers + 1)
    hyper = types.UniTuple(types.float64, 4)
    flag, integer = types.boolean, types.int64
    address, three, five = types.UniTuple(integer, 3), types.UniTuple(integer, 3), types.UniTuple(integer, 5)
    return {
        "matmul_tiled": (A2, A1, A1, A1, I1, address, address, address, address, address, three, five),
        "matmul_small": (A2, A2, A2, flag, flag, integer, integer, A1, A2),
        "activation_kernel": (A2, A2, integer, A2, flag),
        "softmax_rows": (A2, I1, integer, A2, A1),
        "evaluate_rows": (A2, I1, F1),
        "sgd_update_kernel": (A1, A1, types.float64),
        "optimizer_update_kernel": (A1, A1, A1, sizes, hyper),
        "count_nonfinite_kernel": (A1, I1),
        "sgd_epoch_kernel": (A1, A1, sizes, integer, A2, I1, I1, hyper, A1, integer, F1),
        "minibatch_epoch_kernel": (A1, A1, I1, integer, A2, I1, I1, integer, hyper, A1, A1, F1),
    }


#: Kernels whose code depends on the number of layers (``sizes`` is a tuple of that length).
LAYERED = {"optimizer_update_kernel", "sgd_epoch_kernel"}


def all_kernels():
    """Every ``@cuda.jit`` kernel (not device function) defined in the kernels.cuda package."""
    import kernels.cuda as package

    found = {}
    for info in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module(f"kernels.cuda.{info.name}")
        for name, value in vars(module).items():
            if hasattr(value, "py_func") and hasattr(value, "configure") and value.__module__ == module.__name__:
                if not getattr(value, "targetoptions", {}).get("device", False):
                    found[name] = value
    return found


def find_ptxas():
    """``ptxas`` from pip's nvidia-cuda-nvcc (a test dependency), else one on the PATH."""
    try:
        import nvidia
    except ImportError:
        nvidia = None
    for root in getattr(nvidia, "__path__", []):
        for candidate in sorted(pathlib.Path(root).glob("cu*/bin/ptxas")):
            return str(candidate)
    return shutil.which("ptxas")


@pytest.fixture
def target_device(monkeypatch):
    """Let device functions compile without a driver.

    numba-cuda (seen with 0.30.4) compiles a ``@cuda.jit(device=True)`` function
    called from a kernel for the *current device's* compute capability, which it
    asks the driver for, even inside ``compile_ptx``; with no driver that raises.
    This hands it the capability being compiled for instead.
    """
    import types

    import numba.cuda.dispatcher as dispatcher

    def use(cc):
        monkeypatch.setattr(dispatcher, "get_current_device", lambda: types.SimpleNamespace(compute_capability=cc))

    return use


def compile_kernel(kernel, signature, cc):
    """PTX of ``kernel`` for ``signature`` with the kernel's own options: ``compile_ptx(kernel.py_func, ...)``
    alone drops its launch bounds and fast math."""
    from numba import cuda

    options = kernel.targetoptions
    ptx, _ = cuda.compile_ptx(kernel.py_func, signature, cc=cc, launch_bounds=options.get("launch_bounds"),
                              fastmath=options.get("fastmath", False))
    return ptx


def ptxas_report(ptxas, ptx, cc, directory):
    """``ptxas -v`` of ``ptx``: (registers, spill store bytes, spill load bytes, stack bytes) per entry function.

    ``-c`` (relocatable): a cooperative kernel calls cudadevrt's grid barrier, linked only at load time.
    """
    source = directory / "kernel.ptx"
    source.write_text(ptx)
    result = subprocess.run([ptxas, f"-arch=sm_{cc[0]}{cc[1]}", "-v", "-c", str(source), "-o",
                             str(directory / "kernel.o")], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    report = {}
    entry = None
    for line in result.stderr.splitlines():
        if match := re.search(r"Compiling entry function '(\S+)'", line):
            entry = match.group(1)
            report[entry] = {"registers": 0, "spill_stores": 0, "spill_loads": 0, "stack": 0}
        elif entry and (match := re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, "
                                            r"(\d+) bytes spill loads", line)):
            report[entry].update(stack=int(match.group(1)), spill_stores=int(match.group(2)),
                                 spill_loads=int(match.group(3)))
        elif entry and (match := re.search(r"Used (\d+) registers", line)):
            report[entry]["registers"] = int(match.group(1))
    return report


@pytest.mark.skipif(SIMULATOR, reason="compile_ptx and ptxas are not part of the simulator")
@pytest.mark.parametrize("cc", [(9, 0), (8, 0)], ids=["sm90", "sm80"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_every_kernel_fits_its_block(cc, dtype, target_device, tmp_path):
    """Every kernel compiles for the GPU with a launch bound, and a block of that size fits an SM without spilling."""
    target_device(cc)
    ptxas = find_ptxas()
    if ptxas is None:
        pytest.skip("no ptxas: pip install nvidia-cuda-nvcc (a test dependency)")
    kernels = all_kernels()
    table = []
    for n_layers in (1, 2, 3, 4):
        signatures = kernel_signatures(dtype, n_layers)
        assert set(kernels) == set(signatures), "a kernel has no PTX signature in this test"
        for name, kernel in kernels.items():
            if n_layers > 1 and name not in LAYERED:
                continue
            bound = kernel.targetoptions.get("launch_bounds")
            assert bound, f"{name} declares no launch_bounds"
            ptx = compile_kernel(kernel, signatures[name], cc)
            assert f".target sm_{cc[0]}{cc[1]}" in ptx and f".maxntid {bound}, 1, 1" in ptx, name
            (resources,) = ptxas_report(ptxas, ptx, cc, tmp_path).values()
            table.append(f"{name} ({n_layers} layers): {resources['registers']} registers x {bound} threads, "
                         f"stack {resources['stack']} B")
            assert resources["registers"] * bound <= REGISTERS_PER_SM, table[-1]
            assert resources["spill_stores"] == resources["spill_loads"] == 0, f"{name} spills: {resources}"
    print("\n".join(table))


@pytest.mark.parametrize("M, N, K", [(128, 128, 784), (128, 784, 128), (784, 128, 8192), (10, 128, 8192),
                                     (8192, 128, 784), (1024, 1024, 8192), (7, 3, 5), (1, 1, 1), (300, 2, 33)])
def test_split_k_covers_the_reduction_once(M, N, K):
    """The minibatch kernel's split-K: splits of at least SPLIT_MIN_K (a multiple of TILE_K) that cover K once,
    at most MAX_SPLITS, about SPLIT_ITEMS pieces; none where the product has tiles enough or K is shallow."""
    from kernels.cuda._launch import MAX_SPLITS, SPLIT_ITEMS, SPLIT_MIN_K, TILE_K
    from kernels.cuda.linear import partials_size, split_depth, split_scratch, tile_count

    depth = split_depth(M, N, K)
    splits = -(-K // depth)
    tiles = tile_count(M, N)
    assert (splits - 1) * depth < K <= splits * depth
    if splits == 1:
        assert depth == K and split_scratch(M, N, K) == 0
        assert tiles >= SPLIT_ITEMS // 2 or K < 2 * SPLIT_MIN_K
    else:
        assert depth % TILE_K == 0 and depth >= SPLIT_MIN_K and splits <= MAX_SPLITS
        assert tiles * splits <= SPLIT_ITEMS + tiles
        assert split_scratch(M, N, K) == partials_size(M, N, splits) == splits * (M * N + M)


def test_slice_bounds_divide_exactly_without_integer_division():
    """The per-sample kernel's ``floor_div`` (a float reciprocal, corrected) is ``a // b`` exactly, at and
    around every multiple of ``b`` and for large ``a``; so the slices still tile the units exactly."""
    from kernels.cuda import per_sample

    floor_div = per_sample.floor_div.py_func
    rng = np.random.default_rng(0)
    for b in [1, 2, 3, 7, 16, 49, 128, 132, 1000, 4095, 65_537, 2**31 - 1]:
        inverse = 1.0 / b
        multiples = rng.integers(0, 2**52 // b, 200) * b
        for a in np.concatenate([np.arange(min(3 * b + 2, 1000)), multiples, multiples - 1, multiples + 1]):
            a = int(a)
            if 0 <= a < 2**52:
                assert floor_div(a, b, inverse) == a // b, (a, b)
    for n, n_slices in [(128, 16), (128, 3), (784, 132), (10, 7)]:
        inverse = 1.0 / n_slices  # slice_range's two calls (a device function calling another runs on a device)
        bounds = [(floor_div(n * s, n_slices, inverse), floor_div(n * (s + 1), n_slices, inverse))
                  for s in range(n_slices)]
        assert bounds[0][0] == 0 and bounds[-1][1] == n
        assert all(bounds[s][1] == bounds[s + 1][0] for s in range(n_slices - 1))
        assert bounds == [(n * s // n_slices, n * (s + 1) // n_slices) for s in range(n_slices)]


@pytest.mark.skipif(SIMULATOR, reason="the GPU's constants")
def test_split_k_where_a_real_gpu_measured_long_serial_products():
    """The two products an H200 found slowest before split-K (bench/RESULTS.md): batch 128's first forward
    product (4 tiles over K = 784) and batch 8192's first weight gradient (26 tiles over K = 8192)."""
    from kernels.cuda.linear import split_depth

    assert -(-784 // split_depth(128, 128, 784)) == 22
    assert -(-8192 // split_depth(128, 784, 8192)) == 5
    assert split_depth(8192, 128, 784) == 784  # 256 tiles: no split


@pytest.mark.skipif(SIMULATOR, reason="checked in the normal process")
def test_importing_kernels_never_needs_a_gpu():
    assert cuda_ops.is_available() in (True, False)
    if not cuda_ops.is_available():
        with pytest.raises(RuntimeError, match="backend='cuda' found no usable CUDA GPU"):
            cuda_ops.require_gpu()


simulated = pytest.mark.skipif(not CUDA_UNDER_TEST, reason="runs in the CUDA simulator process (or on a GPU)")


@simulated
@pytest.mark.parametrize("batch_size", [1, 5])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_cuda_fit_matches_cpu(batch_size, dtype):
    from model import MLP

    rng = np.random.default_rng(0)
    X = rng.random((12, 6))
    X[X < 0.4] = 0
    y = rng.integers(0, 3, 12)
    X_val, y_val = rng.random((4, 6)), rng.integers(0, 3, 4)
    nets = {b: MLP([6, 5, 4, 3], activation="tanh", backend=b, dtype=dtype, seed=1) for b in ("cpu", "cuda")}
    histories = {b: net.fit(X, y, epochs=2, lr=0.1, batch_size=batch_size, validation_data=(X_val, y_val))
                 for b, net in nets.items()}
    tol = {"float64": {"rtol": 1e-9, "atol": 1e-12}, "float32": {"rtol": 1e-4, "atol": 1e-5}}[dtype]
    for (W, b), (W_ref, b_ref) in zip(nets["cuda"].params, nets["cpu"].params):
        np.testing.assert_allclose(W, W_ref, **tol)
        np.testing.assert_allclose(b, b_ref, **tol)
    np.testing.assert_allclose(histories["cuda"].train_loss, histories["cpu"].train_loss, **tol)
    np.testing.assert_allclose(histories["cuda"].val_loss, histories["cpu"].val_loss, **tol)
    assert histories["cuda"].val_accuracy == histories["cpu"].val_accuracy


@simulated
@pytest.mark.parametrize("batch_size", [1, 4], ids=["per-sample", "minibatch"])
def test_cuda_fit_matches_torch_sgd(batch_size):
    """Nesterov momentum with weight decay, float64, 10 samples (a short last batch), 3 epochs: torch's weights."""
    from model import MLP
    from tests.test_optimizer import torch_sgd

    rng = np.random.default_rng(4)
    X, y = rng.random((10, 6)), rng.integers(0, 3, 10)
    net = MLP([6, 5, 3], activation="tanh", backend="cuda", dtype="float64", seed=2)
    expected = torch_sgd(net.params, X, y, 0.05, batch_size, 3, 0.8, True, 0.01)
    net.fit(X, y, epochs=3, lr=0.05, batch_size=batch_size, shuffle=False, momentum=0.8, nesterov=True,
            weight_decay=0.01)
    for (W, b), (W_ref, b_ref) in zip(net.params, expected):
        np.testing.assert_allclose(W, W_ref, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(b, b_ref, rtol=1e-9, atol=1e-12)


@simulated
def test_cuda_model_api(tmp_path):
    from model import MLP

    rng = np.random.default_rng(1)
    X, y = rng.random((9, 4)), rng.integers(0, 3, 9)
    net = MLP([4, 5, 3], backend="cuda", dtype="float64", seed=0)
    reference = MLP([4, 5, 3], backend="cpu", dtype="float64", seed=0)
    assert net.backend == "cuda"
    np.testing.assert_allclose(net.predict_proba(X), reference.predict_proba(X), rtol=1e-12)
    np.testing.assert_array_equal(net.predict(X), reference.predict(X))
    assert net.score(X, y) == reference.score(X, y)
    assert net.loss(X, y) == pytest.approx(reference.loss(X, y), rel=1e-12)
    for (dW, db), (dW_ref, db_ref) in zip(net.gradients(X, y), reference.gradients(X, y)):
        np.testing.assert_allclose(dW, dW_ref, rtol=1e-10)
        np.testing.assert_allclose(db, db_ref, rtol=1e-10)
    net.save(tmp_path / "m.npz")
    loaded = MLP.load(tmp_path / "m.npz", backend="cuda")
    np.testing.assert_array_equal(loaded.params[0][0], net.params[0][0])


SLICE_CASES = [(sizes, n_slices, "plain") for sizes in ([7, 3], [6, 5, 4], [11, 5, 4], [5, 6, 4, 3], [4, 5, 6, 3, 2])
               for n_slices in (1, 2, 3, "one unit each")]
# [11, 5, 4]: more inputs than the simulator's first layer stages at once (8), so two passes.
SLICE_CASES += [(sizes, n_slices, "nesterov+decay") for sizes, n_slices in (([6, 5, 4], 2), ([11, 5, 4], 3),
                                                                               ([5, 6, 4, 3], 3))]


@simulated
@pytest.mark.parametrize("sizes, n_slices, optimizer", SLICE_CASES, ids=str)
def test_per_sample_kernel_with_any_number_of_slices(sizes, n_slices, optimizer):
    """The per-sample kernel's partition (slices of units, shares summed across slices, pending first-layer
    updates) gives the reference's result however the units are cut; the simulator runs one block, which loops
    over the slices."""
    import kernels.numpy as reference
    from kernels import layout
    from kernels.cuda import cuda
    from kernels.cuda.per_sample import sgd_epoch_variant
    from kernels.optimizer import hyper

    rng = np.random.default_rng(len(sizes))
    X = rng.standard_normal((9, sizes[0]))
    X[rng.random(X.shape) < 0.4] = 0
    y = rng.integers(0, sizes[-1], 9)
    theta = rng.standard_normal(layout.param_count(sizes)) * 0.5
    velocity = rng.standard_normal(theta.shape) * 0.01
    order = np.array([3, 1, 4, 1, 5])
    parameters = hyper(0.1) if optimizer == "plain" else hyper(0.05, 0.8, True, 0.01)
    slices = (sizes[0] if len(sizes) == 2 else max(sizes[1:-1])) if n_slices == "one unit each" else n_slices
    work = np.zeros(layout.workspace_size(sizes, 1))
    expected = [theta.copy(), velocity.copy(), np.zeros(1)]
    reference.sgd_epoch(expected[0], expected[1], layout.as_sizes(sizes), 2, X, y, order, parameters, work.copy(),
                        expected[2])
    got = [cuda.to_device(a) for a in (theta, velocity, np.zeros(1))]
    if slices * (2 * sizes[-1] + 2 * max(sizes[1:-2], default=0)) > layout.param_count(sizes):
        with pytest.raises(ValueError, match="work buffer holds the shares of at most"):
            sgd_epoch_variant(got[0], got[1], sizes, 2, cuda.to_device(X), cuda.to_device(y), cuda.to_device(order),
                              parameters, cuda.to_device(work), got[2], slices)
        return
    sgd_epoch_variant(got[0], got[1], sizes, 2, cuda.to_device(X), cuda.to_device(y), cuda.to_device(order),
                      parameters, cuda.to_device(work), got[2], slices)
    for value, want in zip(got, expected):
        np.testing.assert_allclose(value.copy_to_host(), want, rtol=1e-10, atol=1e-12)


@simulated
@pytest.mark.parametrize("batch_size", [1, 2])
def test_cuda_divergence_on_the_very_last_update_is_caught(batch_size):
    from model import MLP

    X, y, lr = last_update_overflows("float64", batch_size)
    net = MLP([4, 6, 3], backend="cuda", dtype="float64", seed=0)
    before = net._host_theta()
    with pytest.raises(FloatingPointError, match="weights became NaN or infinite"):
        net.fit(X, y, epochs=1, lr=lr, batch_size=batch_size, shuffle=False)
    np.testing.assert_array_equal(net._host_theta(), before)


@simulated
def test_cuda_scores_a_nan_model_as_cpu_does():
    from model import MLP

    rng = np.random.default_rng(2)
    X, y = rng.random((20, 4)), rng.integers(0, 3, 20)
    results = {}
    for backend in ("cpu", "cuda"):
        net = MLP([4, 5, 3], backend=backend, dtype="float64", seed=0)
        theta = net._host_theta()
        theta[-2] = np.nan  # b_2[1]: logit 1 is NaN, NumPy's arg-max picks it
        net._backend.assign(net._theta, net._backend.to_device(theta))
        results[backend] = (net.score(X, y), np.isnan(net.loss(X, y)))
    assert results["cuda"] == results["cpu"] == (np.mean(y == 1), True)


@simulated
def test_cuda_validation_set_larger_than_the_training_set():
    from model import MLP

    rng = np.random.default_rng(3)
    X, y = rng.random((40, 4)), rng.integers(0, 3, 40)
    net = MLP([4, 5, 3], backend="cuda", dtype="float64", seed=0)
    history = net.fit(X[:3], y[:3], epochs=1, validation_data=(X[10:40], y[10:40]))
    assert history.val_loss[0] == pytest.approx(net.loss(X[10:40], y[10:40]), rel=1e-12)


@simulated
def test_host_arrays_in_a_launch_are_an_error():
    """numba's implicit-copy performance warning is raised as an error by the test configuration."""
    import warnings

    from numba import cuda

    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="Host array used in CUDA kernel")
        theta = cuda.to_device(np.zeros(4))
        cuda_ops.sgd_update(theta, cuda.to_device(np.ones(4)), 0.5)
        np.testing.assert_allclose(theta.copy_to_host(), -0.5)
