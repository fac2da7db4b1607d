"""``python -m klingmon``: the same as the ``klingmon`` command."""

from klingmon.cli import main

main()
