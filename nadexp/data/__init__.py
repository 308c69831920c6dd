"""Datasets: D(v) (directional), CIFAR-10/100 (cifar10, cifar10_files, variants), their settings (settings, no torch), the direction bases
and grids (bases, directions), the NAD file format (nad_file) and the Lightning data modules (datamodule)."""
