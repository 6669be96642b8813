"""``python -m pushgate.cli``: the command line without the installed ``pushgate`` script."""

from pushgate.cli import main

main()
