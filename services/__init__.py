"""The recsys gRPC services: candidate, ranking, rerank and the public gateway."""
