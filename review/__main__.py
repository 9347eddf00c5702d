"""`python -m review`: see review.main."""

import sys

from review.main import main

sys.exit(main())
