"""Direction sweeps: every direction of a basis trained as one job (runner), resumably (store)."""
