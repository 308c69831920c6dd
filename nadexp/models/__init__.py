"""The architecture zoo of the NAD paper, each built as ``Model(input_shape=(C, H, W), num_classes=K, **options)``:
the dataset, not the arch config, decides the input and output sizes."""

from nadexp.models.densenet import DenseNet121
from nadexp.models.lenet import LeNet
from nadexp.models.logreg import LogReg
from nadexp.models.resnet import ResNet18
from nadexp.models.vgg import VGG

__all__ = ["DenseNet121", "LeNet", "LogReg", "ResNet18", "VGG"]
