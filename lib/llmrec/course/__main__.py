"""`python -m llmrec.course --preset NAME`: the course runner (llmrec.course.runner)."""

import sys

from llmrec.course.runner import main

if __name__ == "__main__":
    sys.exit(main())
