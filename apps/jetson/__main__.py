import sys

from apps.jetson.app import main

sys.exit(main())
