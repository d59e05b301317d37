"""Allow ``python -m partnersync``."""

from partnersync.cli import main

main()
