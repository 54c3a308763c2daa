{{/*
Naming, labels and shared pod/container fragments of the recsys chart.
*/}}

{{/* Chart name, overridable. */}}
{{- define "recsys.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name prefix of every object: <release>-<chart> unless the release name already holds it. */}}
{{- define "recsys.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 32 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 32 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 32 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Name of a component's objects. Usage: include "recsys.componentName" (list $ "gateway") */}}
{{- define "recsys.componentName" -}}
{{- $root := index . 0 -}}
{{- printf "%s-%s" (include "recsys.fullname" $root) (index . 1) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* helm.sh/chart label value. */}}
{{- define "recsys.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Selector labels of a component (stable across upgrades).
Usage: include "recsys.selectorLabels" (list $ "gateway")
*/}}
{{- define "recsys.selectorLabels" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: {{ include "recsys.name" $root }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{/*
Full standard labels of a component's objects and pods.
Usage: include "recsys.labels" (list $ "gateway")
*/}}
{{- define "recsys.labels" -}}
{{- $root := index . 0 -}}
{{ include "recsys.selectorLabels" . }}
app.kubernetes.io/version: {{ $root.Chart.AppVersion | quote }}
app.kubernetes.io/part-of: {{ include "recsys.name" $root }}
app.kubernetes.io/managed-by: {{ $root.Release.Service }}
helm.sh/chart: {{ include "recsys.chart" $root }}
{{- with $root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Labels matching every pod of the release (for NetworkPolicy peers). */}}
{{- define "recsys.releasePodSelector" -}}
app.kubernetes.io/name: {{ include "recsys.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* ServiceAccount the pods run as. */}}
{{- define "recsys.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "recsys.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Image reference of a component; the tag defaults to the chart's appVersion.
Usage: include "recsys.image" (list $ .Values.gateway.image)
*/}}
{{- define "recsys.image" -}}
{{- $root := index . 0 }}
{{- $image := index . 1 }}
{{- $tag := default $root.Chart.AppVersion $image.tag }}
{{- if eq $tag "latest" }}
{{- fail "image tags must be pinned: `latest` is not allowed" }}
{{- end }}
{{- printf "%s:%s" $image.repository $tag }}
{{- end }}

{{/* Image of the Feast jobs: feast.image, else the gateway image. */}}
{{- define "recsys.feastImage" -}}
{{- $img := .Values.feast.image }}
{{- $repo := default .Values.gateway.image.repository $img.repository }}
{{- $tag := default (default .Chart.AppVersion .Values.gateway.image.tag) $img.tag }}
{{- printf "%s:%s" $repo $tag }}
{{- end }}

{{/*
Pod-level security context. Usage: include "recsys.podSecurityContext" .Values.gateway.podSecurity
*/}}
{{- define "recsys.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .runAsUser }}
runAsGroup: {{ .runAsGroup }}
fsGroup: {{ .fsGroup }}
fsGroupChangePolicy: OnRootMismatch
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* Hardened container security context (the same for every container of the chart). */}}
{{- define "recsys.containerSecurityContext" -}}
runAsNonRoot: true
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/*
Scheduling fields of a pod. Usage: include "recsys.scheduling" (list $ .Values.gateway)
*/}}
{{- define "recsys.scheduling" -}}
{{- $root := index . 0 }}
{{- $c := index . 1 }}
{{- with $root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $c.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $c.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $c.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* ---------------------------------------------------------------- PostgreSQL connection */}}

{{- define "recsys.postgresql.host" -}}
{{- if .Values.postgresql.enabled }}
{{- include "recsys.componentName" (list . "postgresql") }}
{{- else }}
{{- required "externalPostgresql.host is required when postgresql.enabled is false" .Values.externalPostgresql.host }}
{{- end }}
{{- end }}

{{- define "recsys.postgresql.port" -}}
{{- if .Values.postgresql.enabled }}5432{{ else }}{{ .Values.externalPostgresql.port }}{{ end }}
{{- end }}

{{- define "recsys.postgresql.database" -}}
{{- if .Values.postgresql.enabled }}{{ .Values.postgresql.auth.database }}{{ else }}{{ .Values.externalPostgresql.database }}{{ end }}
{{- end }}

{{- define "recsys.postgresql.username" -}}
{{- if .Values.postgresql.enabled }}{{ .Values.postgresql.auth.username }}{{ else }}{{ .Values.externalPostgresql.username }}{{ end }}
{{- end }}

{{- define "recsys.postgresql.sslMode" -}}
{{- if .Values.postgresql.enabled }}disable{{ else }}{{ .Values.externalPostgresql.sslMode }}{{ end }}
{{- end }}

{{- define "recsys.postgresql.secretName" -}}
{{- if .Values.postgresql.enabled }}
{{- required "postgresql.auth.existingSecret is required (create the Secret first)" .Values.postgresql.auth.existingSecret }}
{{- else }}
{{- required "externalPostgresql.existingSecret is required when postgresql.enabled is false" .Values.externalPostgresql.existingSecret }}
{{- end }}
{{- end }}

{{- define "recsys.postgresql.secretKey" -}}
{{- if .Values.postgresql.enabled }}{{ .Values.postgresql.auth.passwordKey }}{{ else }}{{ .Values.externalPostgresql.passwordKey }}{{ end }}
{{- end }}

{{/* libpq DSN without the password (libpq reads PGPASSWORD). */}}
{{- define "recsys.postgresql.dsn" -}}
{{- printf "postgresql://%s@%s:%s/%s?sslmode=%s" (include "recsys.postgresql.username" .) (include "recsys.postgresql.host" .) (include "recsys.postgresql.port" .) (include "recsys.postgresql.database" .) (include "recsys.postgresql.sslMode" .) }}
{{- end }}

{{/* ---------------------------------------------------------------- Redis connection */}}

{{- define "recsys.redis.host" -}}
{{- if .Values.redis.enabled }}
{{- include "recsys.componentName" (list . "redis") }}
{{- else }}
{{- required "externalRedis.host is required when redis.enabled is false" .Values.externalRedis.host }}
{{- end }}
{{- end }}

{{- define "recsys.redis.port" -}}
{{- if .Values.redis.enabled }}6379{{ else }}{{ .Values.externalRedis.port }}{{ end }}
{{- end }}

{{/* Name of the Secret holding the Redis password; empty when Redis has no password. */}}
{{- define "recsys.redis.secretName" -}}
{{- if .Values.redis.enabled }}
{{- if .Values.redis.auth.enabled }}
{{- required "redis.auth.existingSecret is required when redis.auth.enabled is true" .Values.redis.auth.existingSecret }}
{{- end }}
{{- else }}
{{- .Values.externalRedis.existingSecret }}
{{- end }}
{{- end }}

{{- define "recsys.redis.secretKey" -}}
{{- if .Values.redis.enabled }}{{ .Values.redis.auth.passwordKey }}{{ else }}{{ .Values.externalRedis.passwordKey }}{{ end }}
{{- end }}

{{/*
Environment variables carrying the database and Redis passwords (from Secrets), read by libpq (PGPASSWORD)
and substituted into feature_store.yaml by Feast (${PGPASSWORD}, ${REDIS_PASSWORD}).
*/}}
{{- define "recsys.secretEnv" -}}
- name: PGPASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "recsys.postgresql.secretName" . }}
      key: {{ include "recsys.postgresql.secretKey" . }}
{{- $redisSecret := include "recsys.redis.secretName" . }}
{{- if $redisSecret }}
- name: REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $redisSecret }}
      key: {{ include "recsys.redis.secretKey" . }}
{{- end }}
{{- end }}

{{/* ---------------------------------------------------------------- Other addresses */}}

{{/* OTLP endpoint of the services; empty when tracing is off. */}}
{{- define "recsys.otlpEndpoint" -}}
{{- if .Values.otelCollector.enabled }}
{{- printf "http://%s:4317" (include "recsys.componentName" (list . "otel-collector")) }}
{{- else }}
{{- .Values.externalOtlpEndpoint }}
{{- end }}
{{- end }}

{{/* host:port of Triton's gRPC endpoint for the ranking stage. */}}
{{- define "recsys.tritonAddress" -}}
{{- if .Values.ranking.tritonAddress }}
{{- .Values.ranking.tritonAddress }}
{{- else if .Values.triton.enabled }}
{{- printf "%s:8001" (include "recsys.componentName" (list . "triton")) }}
{{- else if eq .Values.ranking.backend "triton" }}
{{- fail "ranking.backend=triton needs triton.enabled=true or ranking.tritonAddress" }}
{{- end }}
{{- end }}

{{- define "recsys.bundlesClaim" -}}
{{- default (include "recsys.componentName" (list . "bundles")) .Values.persistence.bundles.existingClaim }}
{{- end }}

{{- define "recsys.dataClaim" -}}
{{- default (include "recsys.componentName" (list . "data")) .Values.persistence.data.existingClaim }}
{{- end }}

{{/* Where the services and training find the bundles, the feature repository and the data claim. */}}
{{- define "recsys.bundleDir" -}}/var/lib/recsys/bundles{{- end }}
{{- define "recsys.featureRepo" -}}/app/features{{- end }}
{{- define "recsys.dataDir" -}}/app/var/data{{- end }}

{{/* Environment shared by every recsys container (services and Feast jobs). */}}
{{- define "recsys.commonEnv" -}}
- name: HOME
  value: /tmp
- name: RECSYS_BUNDLE_DIR
  value: {{ include "recsys.bundleDir" . }}
- name: RECSYS_FEATURE_REPO
  value: {{ include "recsys.featureRepo" . }}
- name: RECSYS_LOG_LEVEL
  value: {{ .Values.logging.level | quote }}
- name: RECSYS_LOG_JSON
  value: {{ .Values.logging.json | quote }}
- name: FEAST_USAGE
  value: "False"
{{ include "recsys.secretEnv" . }}
{{- end }}

{{/* Checksum of the Feast config, rolled into pod annotations so config changes restart pods. */}}
{{- define "recsys.feastConfigChecksum" -}}
{{- include (print .Template.BasePath "/feast/configmap.yaml") . | sha256sum }}
{{- end }}

{{/*
The gateway's event log schema, for everything that imports features/definitions.py (the Feast jobs, the Ray
pods): with the postgres offline store, `feedback_events_source` reads `<schema>.events`.
*/}}
{{- define "recsys.eventLogSchemaEnv" -}}
- name: RECSYS_GATEWAY_EVENT_LOG_SCHEMA
  value: {{ .Values.gateway.eventLog.schema | quote }}
{{- end }}

{{/* ---------------------------------------------------------------- TLS, metrics and rules of the stages */}}

{{- define "recsys.tlsDir" -}}/etc/recsys/tls{{- end }}
{{- define "recsys.rerankRulesDir" -}}/etc/recsys/rerank{{- end }}

{{/* Name of the TLS Secret; empty when TLS is off. */}}
{{- define "recsys.tlsSecret" -}}
{{- if .Values.tls.enabled }}
{{- required "tls.existingSecret is required when tls.enabled is true (a Secret with tls.crt, tls.key and ca.crt)" .Values.tls.existingSecret }}
{{- end }}
{{- end }}

{{/* RECSYS_TLS_* of a stage (TlsSettings in services/common/security.py); nothing when TLS is off. */}}
{{- define "recsys.tlsEnv" -}}
{{- if include "recsys.tlsSecret" . }}
- name: RECSYS_TLS_CERT_FILE
  value: {{ include "recsys.tlsDir" . }}/tls.crt
- name: RECSYS_TLS_KEY_FILE
  value: {{ include "recsys.tlsDir" . }}/tls.key
- name: RECSYS_TLS_CA_FILE
  value: {{ include "recsys.tlsDir" . }}/ca.crt
- name: RECSYS_TLS_REQUIRE_CLIENT_CERT
  value: {{ .Values.tls.requireClientCert | quote }}
{{- end }}
{{- end }}

{{/*
Health check of a stage serving TLS, as an exec probe (the kubelet's native gRPC probe cannot do TLS): calls
grpc.health.v1 on the local port with the pod's own certificate (so it also passes under mTLS), verifying the
server against ca.crt under the stage's Service name, and succeeds only on SERVING.
Usage: include "recsys.tlsHealthExec" (list $ "gateway" 50051)
*/}}
{{- define "recsys.tlsHealthExec" -}}
{{- $root := index . 0 }}
{{- $stage := index . 1 }}
{{- $port := index . 2 }}
exec:
  command:
    - python
    - -c
    - |-
      import os, sys, grpc
      from grpc_health.v1 import health_pb2, health_pb2_grpc
      read = lambda name: open(os.environ[name], "rb").read()
      creds = grpc.ssl_channel_credentials(read("RECSYS_TLS_CA_FILE"), read("RECSYS_TLS_KEY_FILE"), read("RECSYS_TLS_CERT_FILE"))
      options = [("grpc.ssl_target_name_override", "{{ include "recsys.componentName" (list $root $stage) }}")]
      with grpc.secure_channel("127.0.0.1:{{ $port }}", creds, options=options) as channel:
          reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=3)
      sys.exit(0 if reply.status == health_pb2.HealthCheckResponse.SERVING else 1)
{{- end }}

{{/* Ray Train workers per model of the `train` RayJob: training.jobs.train.workers, else the worker group size. */}}
{{- define "recsys.ray.trainWorkers" -}}
{{- $n := int .Values.training.jobs.train.workers }}
{{- if eq $n 0 }}{{ $n = max 1 (int .Values.training.workers.replicas) }}{{ end }}
{{- $n }}
{{- end }}
