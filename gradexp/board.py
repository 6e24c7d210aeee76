"""python -m gradexp.board: TensorBoard on gradexp runs (gradexp/study/board.py)."""

import sys

from gradexp.study.board import main

if __name__ == "__main__":
    sys.exit(main())
