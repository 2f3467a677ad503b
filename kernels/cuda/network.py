"""Whole-network ops on the GPU: forward and backward passes, evaluation and prediction, unfused.

References: :mod:`kernels.numpy.network` (same names, same arguments; see there
for the shared ones). These compose one product launch per layer (bias,
activation and derivative fused into the products' epilogues); the training
epochs are single fused kernels in :mod:`kernels.cuda.per_sample` and
:mod:`kernels.cuda.minibatch`. Everything stays on the device: ``theta``, the
data and the work buffer are device arrays, ``sizes`` a host sequence.
"""

from kernels import layout
from kernels.activations import IDENTITY
from kernels.cuda._launch import ACTIVATION_GRADIENT, BIAS_ACTIVATION, ROW_SUM, cuda
from kernels.cuda.linear import matmul
from kernels.cuda.softmax import GRADIENT, SOFTMAX, evaluate_logits, launch_rows

if cuda is not None:

    @cuda.jit(device=True, inline=True)
    def layer_place(sizes, l):
        """Where ``W_l`` and ``b_l`` start in ``theta``, and the units of the layers before ``l`` (layer ``l``'s
        offset among a sample's activations), for l = 1..L; the fused epoch kernels' device arithmetic of
        :mod:`kernels.layout`."""
        w = 0
        units = 0
        for m in range(1, l):
            w += sizes[m] * sizes[m - 1] + sizes[m]
            units += sizes[m]
        return w, w + sizes[l] * sizes[l - 1], units


def host_sizes(sizes):
    """Layer sizes as the tuple of ints the kernels take."""
    return tuple(int(n) for n in sizes)


def mlp_forward(theta, sizes, activation, X, acts):
    """Forward pass: one product per layer with bias and activation fused; see the reference."""
    sizes = host_sizes(sizes)
    inputs = X
    params = layout.param_views(theta, sizes)
    for l, ((W, b), A) in enumerate(zip(params, layout.activation_views(acts, sizes, X.shape[0]))):
        code = IDENTITY if l == len(params) - 1 else activation
        matmul(inputs, W, A, transpose_b=True, epilogue=BIAS_ACTIVATION, code=code, vec=b)
        inputs = A


def mlp_backward(theta, sizes, activation, X, y, acts, deltas, grad):
    """Backpropagation of the mean cross-entropy after :func:`mlp_forward`: the output delta, then per layer
    dW with db in one product and dX with g' fused in another; see the reference."""
    sizes = host_sizes(sizes)
    batch = X.shape[0]
    params = layout.param_views(theta, sizes)
    outputs = layout.activation_views(acts, sizes, batch)
    dZs = layout.activation_views(deltas, sizes, batch)
    launch_rows(outputs[-1], y, GRADIENT, out=dZs[-1])
    for l, (dW, db) in reversed(list(enumerate(layout.param_views(grad, sizes)))):
        inputs = X if l == 0 else outputs[l - 1]
        matmul(dZs[l], inputs, dW, transpose_a=True, epilogue=ROW_SUM, vec=db)
        if l > 0:
            matmul(dZs[l], params[l][0], dZs[l - 1], epilogue=ACTIVATION_GRADIENT, code=activation,
                   gate=outputs[l - 1])


def evaluate(theta, sizes, activation, X, y, work, stats):
    """``stats[0] +=`` summed loss, ``stats[1] +=`` correct predictions; see the reference."""
    sizes = host_sizes(sizes)
    n = X.shape[0]
    acts = work[:layout.activation_count(sizes, n)]
    mlp_forward(theta, sizes, activation, X, acts)
    evaluate_logits(layout.activation_views(acts, sizes, n)[-1], y, stats)


def predict_proba(theta, sizes, activation, X, work, probs):
    """``probs = softmax(logits)``; see the reference."""
    sizes = host_sizes(sizes)
    n = X.shape[0]
    acts = work[:layout.activation_count(sizes, n)]
    mlp_forward(theta, sizes, activation, X, acts)
    launch_rows(layout.activation_views(acts, sizes, n)[-1], cuda.device_array(1, "int64"), SOFTMAX, out=probs)
