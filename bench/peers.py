"""Peers for the benchmarks: torch written as a user would write it (nn.Sequential, optim.SGD).

Same initial weights, sample order and learning rate as numba-mlp, so the
results are comparable (and checked against the NumPy reference before timing).
"""

import numpy as np

try:
    import torch
except ImportError:  # the peer columns are skipped
    torch = None


def torch_devices():
    """Devices torch can run on here: 'cpu', and 'cuda' when torch sees a GPU."""
    if torch is None:
        return []
    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


class TorchMLP:
    """``nn.Sequential`` of ``nn.Linear`` + ReLU, trained with ``optim.SGD`` on ``nn.CrossEntropyLoss``."""

    def __init__(self, params, device):
        self.device = device
        layers = []
        for index, (W, b) in enumerate(params):
            linear = torch.nn.Linear(W.shape[1], W.shape[0])
            with torch.no_grad():
                linear.weight.copy_(torch.from_numpy(np.array(W, dtype=np.float32)))
                linear.bias.copy_(torch.from_numpy(np.array(b, dtype=np.float32)))
            layers.append(linear)
            if index < len(params) - 1:
                layers.append(torch.nn.ReLU())
        self.model = torch.nn.Sequential(*layers).to(device)
        self.loss = torch.nn.CrossEntropyLoss()

    def put(self, array):
        """A tensor on this model's device (done once, before timing)."""
        return torch.from_numpy(np.ascontiguousarray(array)).to(self.device)

    def epoch(self, X, y, order, lr, batch_size):
        """One epoch of SGD over ``order`` (tensors on the device); synchronised on a GPU."""
        optimizer = torch.optim.SGD(self.model.parameters(), lr=lr)
        n = order.shape[0]
        for start in range(0, n, batch_size):
            if batch_size == 1:
                i = int(order[start])
                inputs, labels = X[i:i + 1], y[i:i + 1]
            else:
                index = order[start:start + batch_size]
                inputs, labels = X[index], y[index]
            optimizer.zero_grad()
            self.loss(self.model(inputs), labels).backward()
            optimizer.step()
        self.synchronize()

    def synchronize(self):
        if self.device == "cuda":
            torch.cuda.synchronize()

    def params(self):
        """``[(W, b), ...]`` as host float32 arrays."""
        linears = [m for m in self.model if isinstance(m, torch.nn.Linear)]
        return [(m.weight.detach().cpu().numpy().copy(), m.bias.detach().cpu().numpy().copy()) for m in linears]
