"""numba-mlp's model layer: the ``MLP`` class, backends, data and the command line."""

from model.backends import BACKENDS, get_backend
from model.data import load_digits, load_mnist, train_validation_split
from model.history import Epoch, History
from model.mlp import MLP

__all__ = ["BACKENDS", "MLP", "Epoch", "History", "get_backend", "load_digits", "load_mnist", "train_validation_split"]
