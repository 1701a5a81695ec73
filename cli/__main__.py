"""python -m avfr.cli"""

import sys

from avfr.cli import main

sys.exit(main())
