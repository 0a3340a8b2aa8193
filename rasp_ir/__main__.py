"""`python -m rasp_ir`: the `rasp` command line."""

import sys

from rasp_ir.cli import main

sys.exit(main())
