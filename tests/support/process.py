"""Running pushgate as a real program, as an operator would."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

#: The installed ``pushgate`` console script of the running interpreter's environment.
PUSHGATE = shutil.which("pushgate", path=str(Path(sys.executable).parent)) or "pushgate"
