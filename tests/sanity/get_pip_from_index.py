"""Stand-in for the get-pip.py that ansible-test bootstraps its sanity venvs with.

ansible-test downloads that script from its own CI host, which machines that
reach only the package index cannot. This installs the same pinned packages
with ensurepip and pip from the configured index instead.
"""

import subprocess
import sys

PIP_ONLY_FLAGS = {"--no-setuptools", "--no-wheel"}

args = [arg for arg in sys.argv[1:] if arg not in PIP_ONLY_FLAGS]
subprocess.check_call([sys.executable, "-m", "ensurepip", "--default-pip"])
subprocess.check_call([sys.executable, "-m", "pip", "install", "--quiet", *args])
