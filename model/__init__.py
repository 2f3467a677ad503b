"""numba-mlp's model layer: the ``MLP`` class, backends, data and the command line."""

from model.backends import BACKENDS, get_backend
from model.data import load_digits, load_mnist, train_validation_split
from model.mlp import MLP, History

__all__ = ["BACKENDS", "MLP", "History", "get_backend", "load_digits", "load_mnist", "train_validation_split"]
