"""`python -m nlprompt_hf ...` is the `nlprompt-hf` command."""

import sys

from .cli import main

sys.exit(main())
