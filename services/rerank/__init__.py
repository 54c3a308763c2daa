"""Rerank stage: diversity (MMR) over item embeddings and per-item explanations."""
