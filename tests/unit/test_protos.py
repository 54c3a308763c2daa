import subprocess
import sys

from ..conftest import REPO


def test_generated_code_is_fresh() -> None:
    result = subprocess.run(
        [sys.executable, "scripts/gen_protos.py", "--check"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_every_service_lives_in_a_versioned_package() -> None:
    from recsys.candidate.v1 import candidate_pb2
    from recsys.gateway.v1 import gateway_pb2
    from recsys.ranking.v1 import ranking_pb2
    from recsys.rerank.v1 import rerank_pb2

    names = [
        m.DESCRIPTOR.services_by_name[s].full_name
        for m, s in [
            (gateway_pb2, "GatewayService"),
            (candidate_pb2, "CandidateService"),
            (ranking_pb2, "RankingService"),
            (rerank_pb2, "RerankService"),
        ]
    ]
    assert names == [
        "recsys.gateway.v1.GatewayService",
        "recsys.candidate.v1.CandidateService",
        "recsys.ranking.v1.RankingService",
        "recsys.rerank.v1.RerankService",
    ]
