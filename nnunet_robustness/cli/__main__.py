import sys

from nnunet_robustness.cli import main

sys.exit(main())
