"""`python -m services.ranking`: runs the ranking service until SIGTERM."""

import os

# One BLAS thread per process: multi-threaded BLAS next to the event loop caused 10x latency outliers.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from services.common.server import run_service
from services.common.settings import CommonSettings
from services.ranking.servicer import RankingApp
from services.ranking.settings import RankingSettings

if __name__ == "__main__":
    settings = RankingSettings()
    run_service("ranking", RankingApp(settings, CommonSettings()), settings)
