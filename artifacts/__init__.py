"""What training writes and the services read: the model bundle and its components, the ranker's feature
encoding and serving signature, the two-tower input encoders and the ANN index format."""
