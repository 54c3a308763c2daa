{{/*
Egress rules shared by the NetworkPolicies. Each helper renders list items for `egress:`.
*/}}

{{- define "recsys.netpol.dns" -}}
- to:
    - namespaceSelector:
        {{- toYaml .Values.networkPolicy.dns.namespaceSelector | nindent 8 }}
      podSelector:
        {{- toYaml .Values.networkPolicy.dns.podSelector | nindent 8 }}
  ports:
    - port: 53
      protocol: UDP
    - port: 53
      protocol: TCP
{{- end }}

{{- define "recsys.netpol.postgresql" -}}
{{- if .Values.postgresql.enabled }}
- to:
    - podSelector:
        matchLabels:
          {{- include "recsys.selectorLabels" (list . "postgresql") | nindent 10 }}
  ports:
    - port: 5432
      protocol: TCP
{{- else }}
- {{- with .Values.externalPostgresql.networkPolicyPeers }}
  to:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  ports:
    - port: {{ .Values.externalPostgresql.port }}
      protocol: TCP
{{- end }}
{{- end }}

{{- define "recsys.netpol.redis" -}}
{{- if .Values.redis.enabled }}
- to:
    - podSelector:
        matchLabels:
          {{- include "recsys.selectorLabels" (list . "redis") | nindent 10 }}
  ports:
    - port: 6379
      protocol: TCP
{{- else }}
- {{- with .Values.externalRedis.networkPolicyPeers }}
  to:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  ports:
    - port: {{ .Values.externalRedis.port }}
      protocol: TCP
{{- end }}
{{- end }}

{{/* OTLP export to the in-chart collector (nothing when the endpoint is external: see docs). */}}
{{- define "recsys.netpol.otel" -}}
{{- if .Values.otelCollector.enabled }}
- to:
    - podSelector:
        matchLabels:
          {{- include "recsys.selectorLabels" (list . "otel-collector") | nindent 10 }}
  ports:
    - port: 4317
      protocol: TCP
{{- else if .Values.externalOtlpEndpoint }}
{{- $port := regexReplaceAll "^.*:([0-9]+)/?.*$" .Values.externalOtlpEndpoint "${1}" }}
{{- if regexMatch "^[0-9]+$" $port }}
- ports:
    - port: {{ $port }}
      protocol: TCP
{{- end }}
{{- end }}
{{- end }}

{{/* Egress of every recsys service and Feast job: DNS, PostgreSQL, Redis, the OTel collector. */}}
{{- define "recsys.netpol.commonEgress" -}}
{{ include "recsys.netpol.dns" . | trim }}
{{ include "recsys.netpol.postgresql" . | trim }}
{{ include "recsys.netpol.redis" . | trim }}
{{- with include "recsys.netpol.otel" . | trim }}
{{ . }}
{{- end }}
{{- end }}

{{/* Ingress peer: any pod of this release. */}}
{{- define "recsys.netpol.fromRelease" -}}
- podSelector:
    matchLabels:
      {{- include "recsys.releasePodSelector" . | nindent 6 }}
{{- end }}

{{/* Ingress rule of a stage's metrics port: the scrapers in networkPolicy.metricsFrom (nothing when empty). */}}
{{- define "recsys.netpol.metricsIngress" -}}
{{- if and .Values.metrics.enabled .Values.networkPolicy.metricsFrom }}
- from:
    {{- toYaml .Values.networkPolicy.metricsFrom | nindent 4 }}
  ports:
    - port: metrics
      protocol: TCP
{{- end }}
{{- end }}
