{{/*
Pod spec of the Feast CLI jobs. Usage: include "recsys.feast.podSpec" (list $ "apply")
*/}}
{{- define "recsys.feast.podSpec" -}}
{{- $root := index . 0 }}
{{- $cmd := index . 1 }}
{{- $c := $root.Values.feast }}
serviceAccountName: {{ include "recsys.serviceAccountName" $root }}
automountServiceAccountToken: false
enableServiceLinks: false
restartPolicy: Never
securityContext:
  {{- include "recsys.podSecurityContext" $c.podSecurity | nindent 2 }}
{{- with include "recsys.scheduling" (list $root $c) | trim }}
{{ . }}
{{- end }}
containers:
  - name: feast-{{ $cmd }}
    image: {{ include "recsys.feastImage" $root }}
    imagePullPolicy: {{ $c.image.pullPolicy }}
    workingDir: {{ include "recsys.featureRepo" $root }}
    {{- if eq $cmd "apply" }}
    command: ["feast", "apply"]
    {{- else }}
    command:
      - /bin/sh
      - -ec
      - exec feast materialize-incremental "$(date -u +%Y-%m-%dT%H:%M:%S)"
    {{- end }}
    env:
      {{- include "recsys.commonEnv" $root | nindent 6 }}
      {{- include "recsys.eventLogSchemaEnv" $root | nindent 6 }}
      {{- with $c.env }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
    resources:
      {{- toYaml $c.resources | nindent 6 }}
    securityContext:
      {{- include "recsys.containerSecurityContext" $root | nindent 6 }}
    volumeMounts:
      - name: tmp
        mountPath: /tmp
      - name: feast-config
        mountPath: {{ include "recsys.featureRepo" $root }}/feature_store.yaml
        subPath: feature_store.yaml
        readOnly: true
      {{- if eq $c.offlineStore "file" }}
      - name: data
        mountPath: {{ include "recsys.dataDir" $root }}
        readOnly: true
      {{- end }}
volumes:
  - name: tmp
    emptyDir:
      sizeLimit: 1Gi
  - name: feast-config
    configMap:
      name: {{ include "recsys.componentName" (list $root "feast") }}
  {{- if eq $c.offlineStore "file" }}
  - name: data
    persistentVolumeClaim:
      claimName: {{ include "recsys.dataClaim" $root }}
      readOnly: true
  {{- end }}
{{- end }}
