"""``python -m hrdash`` is the ``hrdash`` command."""

from hrdash.cli import main

if __name__ == "__main__":
    main()
