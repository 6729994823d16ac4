"""``python -m wspace``: the same as the ``wspace`` command."""
from wspace.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
