"""Logistic regression: one linear layer on the flattened input."""

import math

from torch import nn


class LogReg(nn.Sequential):
    def __init__(self, input_shape: tuple[int, int, int], num_classes: int):
        super().__init__(nn.Flatten(), nn.Linear(math.prod(input_shape), num_classes))
