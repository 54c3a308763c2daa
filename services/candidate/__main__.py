"""`python -m services.candidate`: runs the candidate service until SIGTERM."""

import os

# One BLAS/OpenMP thread per process, set before numpy loads: multi-threaded BLAS on shared cores gave 10x
# latency outliers. Searches already run one per executor thread.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

from services.candidate.servicer import CandidateApp  # noqa: E402
from services.candidate.settings import CandidateSettings  # noqa: E402
from services.common.server import run_service  # noqa: E402
from services.common.settings import CommonSettings  # noqa: E402

if __name__ == "__main__":
    settings = CandidateSettings()
    run_service("candidate", CandidateApp(settings, CommonSettings()), settings)
