"""Tests of the Kubernetes deployment: the Helm chart and the Dockerfiles under deploy/k8s."""
