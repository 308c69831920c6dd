from nadexp.training.module import Classifier
from nadexp.training.train import build, train

__all__ = ["Classifier", "build", "train"]
