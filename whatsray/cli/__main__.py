import sys

from whatsray.cli import main

sys.exit(main())
