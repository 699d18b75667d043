"""Allow ``python -m trt``."""

import sys

from trt._cli._main import main

sys.exit(main())
