"""Models torch lacks: an MLP with named layers, activation and initialisation chosen by name."""

from __future__ import annotations

from collections import OrderedDict
from itertools import pairwise

from torch import nn

from gradexp.errors import check_choice

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "gelu": nn.GELU}
INITS = (
    "default",
    "xavier_uniform",
    "xavier_normal",
    "kaiming_uniform",
    "kaiming_normal",
    "orthogonal",
    "zeros",
)


class MLP(nn.Sequential):
    """layer1 → act1 → … → layerN; with hidden=[] it is one linear layer."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        hidden: list[int] = (),
        activation: str = "relu",
        init: str = "default",
        bias: bool = True,
    ):
        check_choice("activation", activation, ACTIVATIONS)
        check_choice("init", init, INITS)
        sizes = [in_features, *hidden, out_features]
        layers = OrderedDict()
        for i, (a, b) in enumerate(pairwise(sizes), start=1):
            layers[f"layer{i}"] = nn.Linear(a, b, bias=bias)
            if i < len(sizes) - 1:
                layers[f"act{i}"] = ACTIVATIONS[activation]()
        super().__init__(layers)
        if init != "default":
            for layer in self:
                if isinstance(layer, nn.Linear):
                    _initialise(layer, init)


def _initialise(layer: nn.Linear, init: str) -> None:
    if init == "zeros":
        nn.init.zeros_(layer.weight)
    else:
        getattr(nn.init, f"{init}_")(layer.weight)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)
