import sys

from rsmoe.cli import main

sys.exit(main())
