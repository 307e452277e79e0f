"""Check a downloaded dataset and run its one-time preparation step.

    python data/prepare.py <dataset> --root data/<Name>

See data/README.md for where each dataset comes from; the logic lives in
restore/data/prepare.py.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for `import restore`

from restore.data.prepare import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
