"""`python -m sentinel` runs the command line."""

from sentinel.entry import main

raise SystemExit(main())
