"""Share a kernel's index range among threads.

The CPU kernels are compiled with ``nogil=True``, so Python threads that call
them on disjoint ranges run in parallel. (numba's own ``parallel=True`` is not
used: its cache can crash, see :mod:`kernels.cpu._jit`.) The pool holds
``numba.config.NUMBA_NUM_THREADS - 1`` workers, the calling thread taking the
first range; ``NUMBA_NUM_THREADS=1`` therefore makes every kernel serial.
"""

import concurrent.futures
import threading

from numba import config

#: Work (multiply-adds) from which a product is worth sharing among threads.
PARALLEL_MIN_WORK = 1 << 21

_lock = threading.Lock()
_executor = None


def thread_count():
    return max(1, int(config.NUMBA_NUM_THREADS))


def _pool():
    global _executor
    with _lock:
        if _executor is None:
            _executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=thread_count() - 1, thread_name_prefix="numba-mlp"
            )
        return _executor


def split_run(kernel, args, n, align, work):
    """Call ``kernel(*args, start, stop)`` over ``[0, n)``, in aligned ranges across threads when ``work`` pays.

    Parameters
    ----------
    kernel : callable
        A ``nogil`` numba kernel whose last two arguments are the range.
    args : tuple
        Its other arguments.
    n : int
        Length of the range.
    align : int
        Ranges start at multiples of ``align`` (the kernel's block size).
    work : int
        Multiply-adds of the whole call; below :data:`PARALLEL_MIN_WORK` it runs serially.
    """
    threads = thread_count()
    if threads == 1 or work < PARALLEL_MIN_WORK or n < 2 * align:
        kernel(*args, 0, n)
        return
    threads = min(threads, n // align)
    share = (n // threads) // align * align
    bounds = [t * share for t in range(threads)] + [n]
    futures = [_pool().submit(kernel, *args, bounds[t], bounds[t + 1]) for t in range(1, threads)]
    kernel(*args, bounds[0], bounds[1])
    for future in futures:
        future.result()
