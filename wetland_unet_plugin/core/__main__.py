"""``python -m wetland_unet_plugin.core``: the core's command line (see ``cli.py``)."""

import os
import sys

from .cli import main

if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(main())
