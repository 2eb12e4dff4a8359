import sys

from emews_py.farm import main

sys.exit(main())
