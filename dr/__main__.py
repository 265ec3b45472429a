"""``python -m dr``: the ``dr`` command, for an environment without the console script on PATH."""

from dr.cli.entry import main

if __name__ == "__main__":
    main()
