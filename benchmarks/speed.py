"""Side-by-side speed benchmark (W1 epoch time, W2 time to 98 %, W3 inference, ceiling, RSS).

`numlp bench` measures numlp alone; this adds the peers. Install them first:
    pip install torch==2.13.0 scikit-learn threadpoolctl
    python benchmarks/speed.py --data-dir ../shared/data/mnist --json speed.json
"""

import sys

from peers import main

if __name__ == "__main__":
    sys.exit(main())
