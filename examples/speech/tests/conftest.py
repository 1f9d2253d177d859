"""Put the example's packages on sys.path, as the images' PYTHONPATH does."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for sub in ("libs/audio", "services/stt", "services/tts", "gateway"):
    path = str(ROOT / sub)
    if path not in sys.path:
        sys.path.insert(0, path)
