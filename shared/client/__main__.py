"""``python -m shared.client``: the ``xiaozhi-device`` simulator."""

from shared.client.cli import main

raise SystemExit(main())
