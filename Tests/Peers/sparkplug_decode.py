"""Decodes Sparkplug B payload files with the Tahu schema and prints them as one JSON object keyed by file name.

Usage: sparkplug_decode.py FILE... ; exits non-zero (with the reason on stderr) if a file does not parse.
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sparkplug_tahu import payload_to_dict  # noqa: E402


def main():
    out = {}
    for path in sys.argv[1:]:
        with open(path, "rb") as f:
            out[os.path.basename(path)] = payload_to_dict(f.read())
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
