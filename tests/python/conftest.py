"""pytest setup for tests/python and tests/integration: makes twin_testlib importable."""
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
