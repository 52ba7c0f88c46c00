import sys

from ssl_video.cli import main

sys.exit(main())
