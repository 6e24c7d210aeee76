"""python -m gradexp.report: the report over finished runs (gradexp/study/report.py)."""

import sys

from gradexp.study.report import main

if __name__ == "__main__":
    sys.exit(main())
