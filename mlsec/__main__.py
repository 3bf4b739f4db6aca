"""`python -m mlsec`."""

from mlsec.cli import main

if __name__ == "__main__":
    main()
