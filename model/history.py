"""What ``fit`` measured: a :class:`History` of :class:`Epoch` records, and its plot."""

import operator
from dataclasses import dataclass, field
from typing import NamedTuple


class Epoch(NamedTuple):
    """One epoch of a :class:`History`: ``history[i]``, or what iterating over it gives."""

    epoch: int
    train_loss: float
    val_loss: float | None
    val_accuracy: float | None
    seconds: float
    lr: float


#: The per-epoch lists of a :class:`History`, in :class:`Epoch` order.
METRICS = ("train_loss", "val_loss", "val_accuracy", "seconds", "lr")


@dataclass
class History:
    """What ``fit`` measured, one entry per completed epoch.

    ``history.train_loss`` (or ``history["train_loss"]``) is a metric's list over
    the epochs; ``history[i]`` is epoch ``i`` as an :class:`Epoch` record, and
    iterating gives the records in turn.
    """

    train_loss: list = field(default_factory=list)
    val_loss: list = field(default_factory=list)
    val_accuracy: list = field(default_factory=list)
    seconds: list = field(default_factory=list)
    #: The learning rate of each epoch.
    lr: list = field(default_factory=list)
    #: Epoch (1-based) whose weights the model holds after early stopping, else None.
    best_epoch: int | None = None
    stopped_early: bool = False
    interrupted: bool = False

    def __getitem__(self, key):
        if isinstance(key, str):
            if key not in METRICS:
                raise KeyError(f"History has the metrics {METRICS}, not {key!r}")
            return getattr(self, key)
        if isinstance(key, slice):
            return [self[i] for i in range(len(self))[key]]
        try:
            index = range(len(self))[operator.index(key)]
        except TypeError:
            raise TypeError(f"History indices are epoch numbers, slices or metric names, "
                            f"not {type(key).__name__}") from None
        except IndexError:
            raise IndexError(f"History has {len(self)} epochs, no epoch index {key}") from None
        return Epoch(index + 1, *(getattr(self, metric)[index] for metric in METRICS))

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def __len__(self):
        return len(self.train_loss)

    def plot(self, path):
        """Draw the train and validation loss, and the validation accuracy, per epoch, into an image file.

        Parameters
        ----------
        path : str or os.PathLike
            Where to write; the format follows the extension (``.png``, ``.pdf``,
            ``.svg``, ... as matplotlib knows them).

        Returns
        -------
        matplotlib.figure.Figure
            The figure, for further changes.

        Raises
        ------
        ImportError
            Without matplotlib (``pip install 'numba-mlp[plot]'``).
        ValueError
            For a history without epochs.
        """
        if len(self) == 0:
            raise ValueError("History.plot: the history has no epochs to plot")
        try:
            from matplotlib.figure import Figure
            from matplotlib.ticker import MaxNLocator
        except ImportError as error:
            raise ImportError("History.plot needs matplotlib, the 'plot' extra: "
                              "pip install 'numba-mlp[plot]' (or pip install matplotlib)") from error
        epochs = range(1, len(self) + 1)
        validated = [i for i, loss in enumerate(self.val_loss) if loss is not None]
        figure = Figure(figsize=(9, 3.6), layout="constrained")
        loss_axes, accuracy_axes = figure.subplots(1, 2)
        loss_axes.plot(epochs, self.train_loss, marker=".", label="train")
        if validated:
            loss_axes.plot([i + 1 for i in validated], [self.val_loss[i] for i in validated], marker=".",
                           label="validation")
            accuracy_axes.plot([i + 1 for i in validated], [self.val_accuracy[i] for i in validated],
                               marker=".", color="C1")
        else:
            accuracy_axes.text(0.5, 0.5, "no validation data", ha="center", va="center",
                               transform=accuracy_axes.transAxes)
        if self.best_epoch is not None:
            for axes in (loss_axes, accuracy_axes):
                axes.axvline(self.best_epoch, color="0.6", linestyle="--", linewidth=1)
        loss_axes.set(xlabel="epoch", ylabel="mean cross-entropy", title="loss")
        loss_axes.legend()
        accuracy_axes.set(xlabel="epoch", ylabel="accuracy", title="validation accuracy")
        for axes in (loss_axes, accuracy_axes):
            axes.grid(alpha=0.3)
            axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        figure.savefig(path)
        return figure
