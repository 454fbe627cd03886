"""``python -m agent.cli``: the same as the ``synthgen`` console script."""

from agent.cli import main

main()
