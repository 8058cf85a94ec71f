import sys

from bench.eval.run import main

sys.exit(main())
