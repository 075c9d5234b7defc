"""``python -m diffnb``: see :mod:`diffnb.cli`."""

from diffnb.cli import main

raise SystemExit(main())
