"""`python -m llmrec.course --preset NAME`: the course runner (llmrec.course.runner)."""

import sys

from llmrec.course.runner import main

sys.exit(main())
