"""``python -m engine``: the ``griddispatch`` command.

Guarded, so that processes the commands start with multiprocessing's ``spawn`` (the timer
index rebuild's readers) can import this module without running the command again.
"""

import sys

from engine.cli import main

if __name__ == "__main__":
    sys.exit(main())
