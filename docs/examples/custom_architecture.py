# %% [markdown]
# # The NADs and Fourier directions of your own network
#
# A notebook in percent format: run it cell by cell in Jupyter (with jupytext) or VS Code, or as a script,
# `python docs/examples/custom_architecture.py` (about 4 minutes on 2 CPU cores). Each call runs what the
# command line runs for the same settings, so its numbers are the command line's (docs/custom_architectures.md).

# %%
import os
from pathlib import Path

from torch import nn

import nadexp

OUT = Path(os.environ.get("NADEXP_EXAMPLE_OUT", "outputs/examples/custom_architecture"))
SHAPE = (1, 16, 16)  # one channel, 16 x 16: small enough for a laptop


# %% [markdown]
# A network of your own takes `(input_shape, num_classes)`. This one downsamples with strided convolutions
# instead of pooling; the NAD paper shows that such choices decide which directions a network can learn.


# %%
class StridedNet(nn.Module):
    def __init__(self, input_shape, num_classes, width=16):
        super().__init__()
        channels = input_shape[0]
        self.features = nn.Sequential(
            nn.Conv2d(channels, width, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, width, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.head = nn.Linear(width, num_classes)

    def forward(self, x):
        return self.head(self.features(x))


# %% [markdown]
# Its NADs: the eigenvectors of the input-gradient covariance over random initialisations. `autograd` takes
# seconds; `method="finite_difference"` is the published estimator (minutes).

# %%
found = nadexp.nads(StridedNet, SHAPE, method="autograd", num_networks=1000)
print("split-half overlap of the top NADs:", found.diagnostic)
print("figures:", sorted(path.name for path in found.plot(OUT).values()))

# %% [markdown]
# Train it on D(v) for a low and a high Fourier direction: the data are linearly separable along v alone. The
# published protocol (10,000 samples, 20 epochs) is the default; NADEXP_EXAMPLE_QUICK=1 makes every training tiny.

# %%
quick = {"dataset.n_train": 512, "dataset.n_test": 256, "trainer.max_epochs": 2} if os.environ.get("NADEXP_EXAMPLE_QUICK") else {}
for direction in ([1, 0], [8, 8]):
    result = nadexp.train_direction(StridedNet, direction, input_shape=SHAPE, settings=quick)
    print(f"direction {direction}: test accuracy {result['test_acc']:.3f}")

# %% [markdown]
# The lowest frequencies (up to 2 cycles along each axis, 13 directions) as a Fourier sweep, into a run directory:
# `python run.py ... hydra.run.dir=<it>` resumes it (once StridedNet is importable, e.g. from a mynet.py) and
# `python -m nadexp.reports <it>` draws it.

# %%
low = {**quick, "sweep.max_frequency": 2}
sweep = nadexp.sweep(StridedNet, "fourier", input_shape=SHAPE, stride=1, run_dir=OUT / "sweep", settings=low)
for direction, accuracy in sorted(sweep.accuracy().items()):
    print(f"{list(direction)}: {accuracy:.3f}")
print("heat map:", [path.name for path in sweep.plot(OUT)])
