import sys

from fangen.cli import main

sys.exit(main())
