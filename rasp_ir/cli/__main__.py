"""`python -m rasp_ir.cli`."""

import sys

from rasp_ir.cli import main

sys.exit(main())
