"""nadexp entry point: `python run.py [group=option ...] [key=value ...]` (Hydra; add -m to sweep), the same as the
`nadexp` command that installing the package adds. See nadexp/cli.py."""

from nadexp.cli import main

if __name__ == "__main__":
    main()
