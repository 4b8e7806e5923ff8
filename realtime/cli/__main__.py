"""``python -m realtime.cli``: the same as the ``doorstep`` entry point."""

from realtime.cli import main

main()
