import sys

from t2ibench.cli import main

sys.exit(main())
