"""Numba-accelerated kernels for multi-layer perceptrons.

Three interchangeable op sets share one set of names and argument orders:

``kernels.numpy``
    The plain NumPy reference (the test oracle and the benchmark baseline).
``kernels.cpu``
    ``@njit`` CPU kernels.
``kernels.cuda``
    ``numba.cuda`` GPU kernels with thin host launchers. Importing it never
    fails on a machine without CUDA; launching a kernel there does, clearly.

Array conventions (all backends)
--------------------------------
* a batch ``X`` is ``(B, n_in)``, C-contiguous;
* a weight matrix ``W`` is ``(n_out, n_in)`` as in ``torch.nn.Linear``, a bias
  ``b`` is ``(n_out,)``;
* all parameters of a network live in one flat buffer ``theta``; see
  :mod:`kernels.layout` for where each ``W`` and ``b`` sits;
* labels ``y`` and sample orders are ``int64``;
* activations are passed as integer codes from :mod:`kernels.activations`.
"""

from kernels import layout
from kernels.activations import ACTIVATIONS, activation_code

__all__ = ["ACTIVATIONS", "activation_code", "layout"]
