"""`python -m app [gui options]`: what start-at-login entries run when no frozen executable exists."""

import sys

from app.main import main

args = sys.argv[1:]
sys.exit(main(args if args[:1] == ["gui"] or args[:1] == ["--version"] else ["gui", *args]))
