"""``python -m conveyor.router``."""

from conveyor.router.main import main

raise SystemExit(main())
