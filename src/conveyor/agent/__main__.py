"""``python -m conveyor.agent``: the same as ``conveyor agent``."""

from conveyor.agent.main import main

raise SystemExit(main())
