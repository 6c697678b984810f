"""Serve a colour test index over real HTTP with the test encoders (used by tests as a subprocess):

    python tests/serve_color.py INDEX PORT
"""

from __future__ import annotations

import sys
from pathlib import Path

import uvicorn
from helpers import color_service

from itr.server import create_app

if __name__ == "__main__":
    service = color_service(Path(sys.argv[1]))
    try:
        uvicorn.run(create_app(service), host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
    finally:
        service.close()
