"""The SGD update as ``numba.cuda`` kernels: plain, and with momentum and weight decay; and the check
that an update left every value finite.

:func:`update_parameters` is the optimizer step over the whole flat ``theta``
as a grid-stride loop; the fused minibatch kernel calls it too. The rule is
:func:`kernels.optimizer.sgd_step`, compiled here as a device function.

Reference: :mod:`kernels.numpy.sgd`.
"""

import math

from kernels.cuda._launch import THREADS, cuda, grid_for, kernel, launch
from kernels.optimizer import sgd_step

if cuda is not None:
    optimizer_step = cuda.jit(device=True, inline=True)(sgd_step)

    @cuda.jit(device=True, inline=True)
    def update_parameters(theta, velocity, grad, sizes, n_layers, hyper, first, stride):
        """``θ ← θ − η (...)`` for every parameter ``first, first + stride, ...`` of each of the ``n_layers``
        layers (``sizes``: a tuple or an array), weight decay on its ``W`` only; the velocity is read and
        written only with momentum."""
        real = theta.dtype.type
        lr, momentum, nesterov, decay = real(hyper[0]), real(hyper[1]), hyper[2], real(hyper[3])
        zero = real(0)
        layer_start = 0
        for l in range(n_layers):
            n_weights = sizes[l + 1] * sizes[l]
            n_layer = n_weights + sizes[l + 1]
            for p in range(first, n_layer, stride):
                q = layer_start + p
                v = velocity[q] if momentum != 0.0 else zero
                w, v = optimizer_step(theta[q], v, grad[q], lr, momentum, nesterov, decay if p < n_weights else zero)
                theta[q] = w
                if momentum != 0.0:
                    velocity[q] = v
            layer_start += n_layer

    @kernel(THREADS)
    def sgd_update_kernel(theta, grad, lr):
        step = theta.dtype.type(lr)
        for p in range(cuda.grid(1), theta.shape[0], cuda.gridsize(1)):
            theta[p] -= step * grad[p]

    @kernel(THREADS)
    def optimizer_update_kernel(theta, velocity, grad, sizes, hyper):
        update_parameters(theta, velocity, grad, sizes, len(sizes) - 1, hyper, cuda.grid(1), cuda.gridsize(1))

    @kernel(THREADS)
    def count_nonfinite_kernel(values, count):
        bad = 0
        for p in range(cuda.grid(1), values.shape[0], cuda.gridsize(1)):
            bad += not math.isfinite(values[p])
        if bad:
            cuda.atomic.add(count, 0, bad)


def sgd_update(theta, grad, lr):
    """In place ``θ ← θ − η g``; theta, grad (P,) device arrays."""
    launch(sgd_update_kernel, grid_for(theta.shape[0]), THREADS, theta, grad, lr)


def optimizer_update(theta, velocity, grad, sizes, hyper):
    """In place, the SGD step with momentum, Nesterov and weight decay on the weights; device arrays (P,),
    ``sizes`` and ``hyper`` on the host."""
    sizes = tuple(int(n) for n in sizes)
    largest = max(sizes[l + 1] * (sizes[l] + 1) for l in range(len(sizes) - 1))
    launch(optimizer_update_kernel, grid_for(largest), THREADS, theta, velocity, grad, sizes, tuple(hyper))


def count_nonfinite(values, count):
    """``count[0] +=`` the number of NaN or infinite entries; values (P,), count int64 (1,) device arrays."""
    launch(count_nonfinite_kernel, grid_for(values.shape[0]), THREADS, values, count)
