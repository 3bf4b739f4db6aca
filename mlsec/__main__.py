"""`python -m mlsec`."""

from mlsec.cli import run

if __name__ == "__main__":
    run()
