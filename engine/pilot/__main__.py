"""`python -m pilot ...`: the same command line as the `pilot` script."""

from pilot.cli import main

raise SystemExit(main())
