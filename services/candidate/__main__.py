"""`python -m services.candidate`: runs the candidate service until SIGTERM."""

from services.candidate.servicer import CandidateApp
from services.candidate.settings import CandidateSettings
from services.common.server import run_service
from services.common.settings import CommonSettings

if __name__ == "__main__":
    settings = CandidateSettings()
    run_service("candidate", CandidateApp(settings, CommonSettings()), settings)
