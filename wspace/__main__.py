"""``python -m wspace``: the same as the ``wspace`` command."""
from wspace.commands.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
