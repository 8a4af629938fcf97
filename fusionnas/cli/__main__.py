"""``python -m fusionnas.cli``: the ``fusionnas`` console script."""
from fusionnas.cli import run

if __name__ == "__main__":
    run()
