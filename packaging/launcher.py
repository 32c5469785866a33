#!/usr/bin/python3 -I
"""pilot: run Pilot with the system's Python 3 and the libraries this package carries.

Installed as /opt/pilot/bin/pilot (/usr/bin/pilot links to it). The libraries lie
in ../lib/common (pure Python) and ../lib/pythonX.Y (compiled for one Python
version each), found from this file's real path, so an unpacked package runs
from wherever it lies. `-I` keeps PYTHONPATH, PYTHONHOME and the user's
site-packages out of a root-run service; Pilot passes its own path on to the
child processes it starts.
"""
import os
import sys

VERSIONS = @VERSIONS@

here = os.path.realpath(__file__)
lib = os.path.join(os.path.dirname(os.path.dirname(here)), "lib")
version = "%d.%d" % sys.version_info[:2]
if version not in VERSIONS:
    # e.g. RHEL 9, whose python3 is 3.9, with python3.11 beside it
    for other in reversed(VERSIONS):
        exe = "/usr/bin/python" + other
        if os.access(exe, os.X_OK):
            os.execv(exe, [exe, "-I", here] + sys.argv[1:])
    sys.stderr.write("pilot: %s is Python %s; this package carries libraries for Python %s only\n"
                     % (sys.executable, version, ", ".join(VERSIONS)))
    sys.exit(2)
sys.path[0:0] = [os.path.join(lib, "python" + version), os.path.join(lib, "common")]

from pilot.cli import main  # noqa: E402

sys.exit(main())
