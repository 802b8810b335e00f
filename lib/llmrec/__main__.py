"""`python -m llmrec <command>`: the kit's commands (llmrec.course.cli has them all). This file only
forwards: it is the package's door to its machinery, not a module anything imports."""

import sys

from llmrec.course.cli import main

if __name__ == "__main__":
    sys.exit(main())
