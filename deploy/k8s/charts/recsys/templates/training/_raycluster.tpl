{{/*
KubeRay cluster spec shared by the RayJobs and the interactive RayCluster: a head (which runs the job driver)
and one CPU worker group, all from the training image, with the data claim at /app/var/data (read-write), the
bundles claim at /var/lib/recsys/bundles (read-write: training publishes bundles there) and the Feast
feature_store.yaml from the ConfigMap over the image's copy (training reads its data through Feast, and the
batch job pushes to the online store).
Usage: include "recsys.ray.clusterSpec" (list $ "train")
*/}}
{{- define "recsys.ray.clusterSpec" -}}
{{- $root := index . 0 }}
{{- $job := index . 1 }}
{{- $t := $root.Values.training }}
rayVersion: {{ $t.rayVersion | quote }}
enableInTreeAutoscaling: false
headGroupSpec:
  rayStartParams:
    dashboard-host: "0.0.0.0"
    {{- with $t.head.rayStartParams }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  template:
    metadata:
      labels:
        {{- include "recsys.labels" (list $root "training") | nindent 8 }}
        recsys/training-job: {{ $job }}
      {{- with $t.head.podAnnotations }}
      annotations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
    spec:
      {{- include "recsys.ray.podSpec" (list $root $t.head "ray-head" true) | trim | nindent 6 }}
workerGroupSpecs:
  - groupName: cpu
    replicas: {{ $t.workers.replicas }}
    minReplicas: {{ $t.workers.minReplicas }}
    maxReplicas: {{ $t.workers.maxReplicas }}
    rayStartParams:
      {{- with $t.workers.rayStartParams }}
      {{- toYaml . | nindent 6 }}
      {{- else }} {}
      {{- end }}
    template:
      metadata:
        labels:
          {{- include "recsys.labels" (list $root "training") | nindent 10 }}
          recsys/training-job: {{ $job }}
        {{- with $t.workers.podAnnotations }}
        annotations:
          {{- toYaml . | nindent 10 }}
        {{- end }}
      spec:
        {{- include "recsys.ray.podSpec" (list $root $t.workers "ray-worker" false) | trim | nindent 8 }}
{{- end }}

{{/*
Pod spec of a Ray node. Usage: include "recsys.ray.podSpec" (list $ .Values.training.head "ray-head" true)
*/}}
{{- define "recsys.ray.podSpec" -}}
{{- $root := index . 0 }}
{{- $g := index . 1 }}
{{- $name := index . 2 }}
{{- $isHead := index . 3 }}
{{- $t := $root.Values.training }}
serviceAccountName: {{ include "recsys.serviceAccountName" $root }}
automountServiceAccountToken: false
enableServiceLinks: false
securityContext:
  {{- include "recsys.podSecurityContext" $t.podSecurity | nindent 2 }}
{{- with include "recsys.scheduling" (list $root $g) | trim }}
{{ . }}
{{- end }}
initContainers:
  # Ray Train keeps results and checkpoints under /app/var/ray_results, which must be shared by the head and
  # the workers: a folder of the data claim. Created here as the Ray user (kubelet would create a missing
  # subPath as root).
  - name: ray-results-dir
    image: {{ include "recsys.image" (list $root $t.image) }}
    imagePullPolicy: {{ $t.image.pullPolicy }}
    command: ["mkdir", "-p", "{{ include "recsys.dataDir" $root }}/ray_results"]
    resources:
      {{- toYaml $t.submitter.resources | nindent 6 }}
    securityContext:
      {{- include "recsys.containerSecurityContext" $root | nindent 6 }}
    volumeMounts:
      - name: tmp
        mountPath: /tmp
      - name: data
        mountPath: {{ include "recsys.dataDir" $root }}
containers:
  - name: {{ $name }}
    image: {{ include "recsys.image" (list $root $t.image) }}
    imagePullPolicy: {{ $t.image.pullPolicy }}
    {{- if $isHead }}
    ports:
      - name: gcs-server
        containerPort: 6379
        protocol: TCP
      - name: dashboard
        containerPort: 8265
        protocol: TCP
      - name: client
        containerPort: 10001
        protocol: TCP
      - name: metrics
        containerPort: 8080
        protocol: TCP
    {{- end }}
    env:
      # The image's home is on the read-only root filesystem.
      - name: HOME
        value: /tmp
      - name: RECSYS_BUNDLE_DIR
        value: {{ include "recsys.bundleDir" $root }}
      - name: RECSYS_FEATURE_REPO
        value: {{ include "recsys.featureRepo" $root }}
      - name: RECSYS_LOG_LEVEL
        value: {{ $root.Values.logging.level | quote }}
      - name: RECSYS_LOG_JSON
        value: {{ $root.Values.logging.json | quote }}
      - name: RAY_USAGE_STATS_ENABLED
        value: "0"
      - name: FEAST_USAGE
        value: "False"
      {{- include "recsys.eventLogSchemaEnv" $root | nindent 6 }}
      {{- /* Feast's SQL registry (libpq: PGPASSWORD), the postgres offline store and Redis (${REDIS_PASSWORD}). */}}
      {{- include "recsys.secretEnv" $root | nindent 6 }}
      {{- with $g.env }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
    resources:
      {{- toYaml $g.resources | nindent 6 }}
    securityContext:
      {{- include "recsys.containerSecurityContext" $root | nindent 6 }}
    volumeMounts:
      - name: tmp
        mountPath: /tmp
      - name: dshm
        mountPath: /dev/shm
      - name: data
        mountPath: {{ include "recsys.dataDir" $root }}
      - name: data
        mountPath: /app/var/ray_results
        subPath: ray_results
      - name: bundles
        mountPath: {{ include "recsys.bundleDir" $root }}
      - name: feast-config
        mountPath: {{ include "recsys.featureRepo" $root }}/feature_store.yaml
        subPath: feature_store.yaml
        readOnly: true
volumes:
  - name: tmp
    emptyDir:
      sizeLimit: 20Gi
  - name: dshm
    emptyDir:
      medium: Memory
      sizeLimit: {{ $t.shmSize }}
  - name: data
    persistentVolumeClaim:
      claimName: {{ include "recsys.dataClaim" $root }}
  - name: bundles
    persistentVolumeClaim:
      claimName: {{ include "recsys.bundlesClaim" $root }}
  - name: feast-config
    configMap:
      name: {{ include "recsys.componentName" (list $root "feast") }}
{{- end }}

{{/* Pod template of the RayJob submitter (runs `ray job submit`; KubeRay fills in the command). */}}
{{- define "recsys.ray.submitterTemplate" -}}
{{- $root := . }}
{{- $t := $root.Values.training }}
metadata:
  labels:
    {{- include "recsys.labels" (list $root "training") | nindent 4 }}
spec:
  serviceAccountName: {{ include "recsys.serviceAccountName" $root }}
  automountServiceAccountToken: false
  enableServiceLinks: false
  restartPolicy: Never
  securityContext:
    {{- include "recsys.podSecurityContext" $t.podSecurity | nindent 4 }}
  {{- with $root.Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  containers:
    - name: ray-job-submitter
      image: {{ include "recsys.image" (list $root $t.image) }}
      imagePullPolicy: {{ $t.image.pullPolicy }}
      env:
        - name: HOME
          value: /tmp
        - name: RAY_USAGE_STATS_ENABLED
          value: "0"
      resources:
        {{- toYaml $t.submitter.resources | nindent 8 }}
      securityContext:
        {{- include "recsys.containerSecurityContext" $root | nindent 8 }}
      volumeMounts:
        - name: tmp
          mountPath: /tmp
  volumes:
    - name: tmp
      emptyDir:
        sizeLimit: 256Mi
{{- end }}
