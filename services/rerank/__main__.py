"""`python -m services.rerank`: runs the rerank service until SIGTERM."""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from services.common.server import run_service
from services.common.settings import CommonSettings
from services.rerank.servicer import RerankApp
from services.rerank.settings import RerankSettings

if __name__ == "__main__":
    settings = RerankSettings()
    run_service("rerank", RerankApp(settings, CommonSettings()), settings)
