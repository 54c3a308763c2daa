"""Candidate generation: embeddings searched with a Faiss index, filtered, with cold-start fallbacks."""
