{{/*
The modelgate container. In mode gateway it is a native sidecar (an init
container with restartPolicy Always) unless modelgate.nativeSidecar is false:
Kubernetes starts it, and waits for its startup probe, before Envoy starts, and
stops it only after Envoy has exited.
*/}}
{{- define "modelgate.container" -}}
{{- $native := and (eq .Values.mode "gateway") .Values.modelgate.nativeSidecar -}}
- name: modelgate
  image: {{ include "modelgate.image" (dict "image" .Values.image "default" .Chart.AppVersion) | quote }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  {{- if $native }}
  restartPolicy: Always
  {{- end }}
  args: ["serve", "--config", "{{ include "modelgate.configDir" . }}/modelgate.yaml"]
  env:
  - name: MODELGATE_LOG_LEVEL
    value: {{ .Values.modelgate.logLevel | quote }}
  - name: OTEL_SERVICE_NAME
    value: {{ include "modelgate.fullname" . | quote }}
  {{- with .Values.otlp.endpoint }}
  - name: OTEL_EXPORTER_OTLP_ENDPOINT
    value: {{ . | quote }}
  - name: OTEL_EXPORTER_OTLP_PROTOCOL
    value: http/protobuf
  {{- end }}
  {{- if .Values.otlp.headersSecret.name }}
  - name: OTEL_EXPORTER_OTLP_HEADERS
    valueFrom:
      secretKeyRef: { name: {{ .Values.otlp.headersSecret.name }}, key: {{ .Values.otlp.headersSecret.key }} }
  {{- end }}
  {{- with .Values.modelgate.env }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
  {{- if or (eq .Values.mode "processor") .Values.metrics.enabled }}
  ports:
  {{- if eq .Values.mode "processor" }}
  - { name: grpc, containerPort: {{ .Values.processor.port }}, protocol: TCP }
  {{- end }}
  {{- if .Values.metrics.enabled }}
  - { name: metrics, containerPort: {{ .Values.metrics.port }}, protocol: TCP }
  {{- end }}
  {{- end }}
  {{- if and (eq .Values.mode "gateway") (not $native) }}
  lifecycle:
    # Outlive Envoy: keep deciding while Envoy finishes its in-flight
    # requests, then drain (server.drainTimeoutMs) and exit.
    preStop:
      sleep: { seconds: {{ .Values.modelgate.preStopSleepSeconds }} }
  {{- end }}
  {{- if eq .Values.mode "processor" }}
  # grpc.health.v1 of the ext_proc service, asked by the kubelet itself.
  startupProbe:
    grpc: { port: {{ .Values.processor.port }}, service: envoy.service.ext_proc.v3.ExternalProcessor }
    periodSeconds: 2
    failureThreshold: 30
  readinessProbe:
    grpc: { port: {{ .Values.processor.port }}, service: envoy.service.ext_proc.v3.ExternalProcessor }
    periodSeconds: 5
    failureThreshold: 2
  livenessProbe:
    grpc: { port: {{ .Values.processor.port }}, service: envoy.service.ext_proc.v3.ExternalProcessor }
    periodSeconds: 10
    failureThreshold: 3
  {{- else }}
  {{- $health := list "node" "/app/bin/modelgate.js" "health" "--address" (include "modelgate.healthAddress" .) "--timeout" "3000" }}
  # grpc.health.v1 of the ext_proc service on the shared socket (`modelgate health`).
  startupProbe:
    exec: { command: {{ toJson $health }} }
    periodSeconds: 2
    timeoutSeconds: 5
    failureThreshold: 30
  readinessProbe:
    exec: { command: {{ toJson $health }} }
    periodSeconds: 10
    timeoutSeconds: 5
    failureThreshold: 2
  livenessProbe:
    exec: { command: {{ toJson $health }} }
    periodSeconds: 20
    timeoutSeconds: 5
    failureThreshold: 3
  {{- end }}
  resources:
    {{- toYaml .Values.modelgate.resources | nindent 4 }}
  securityContext:
    {{- toYaml .Values.containerSecurityContext | nindent 4 }}
  volumeMounts:
  {{- if eq .Values.mode "gateway" }}
  - { name: socket, mountPath: /run/modelgate }
  {{- end }}
  - { name: config, mountPath: {{ include "modelgate.configDir" . }}, readOnly: true }
  - { name: policies, mountPath: {{ include "modelgate.policyDir" . }}, readOnly: true }
  - { name: state, mountPath: {{ include "modelgate.stateDir" . }} }
  - { name: tmp, mountPath: /tmp }
  {{- if include "modelgate.hasCredentials" . }}
  - { name: credentials, mountPath: {{ include "modelgate.credentialDir" . }}, readOnly: true }
  {{- end }}
  {{- if and (eq .Values.mode "gateway") (ne .Values.tls.svid.source "spire") (include "modelgate.usesOAuth" .) }}
  # The gateway's SVID, the TLS client certificate of OAuth token requests (RFC 8705).
  - { name: svid, mountPath: {{ include "modelgate.modelgateSvidDir" . }}, readOnly: true }
  {{- end }}
  {{- if .Values.redis.passwordSecret.name }}
  - { name: redis-password, mountPath: /etc/modelgate/redis, readOnly: true }
  {{- end }}
{{- end -}}

{{/* Envoy: the workload listener, the readiness listener, SDS for its SVID and bundle. */}}
{{- define "modelgate.envoyContainer" -}}
- name: envoy
  image: {{ include "modelgate.image" (dict "image" .Values.envoyImage "default" "") | quote }}
  imagePullPolicy: {{ .Values.envoyImage.pullPolicy }}
  args: ["-c", "{{ include "modelgate.envoyDir" . }}/envoy.yaml", "--log-level", {{ .Values.envoy.logLevel | quote }}, "--disable-hot-restart"]
  ports:
  - { name: https, containerPort: {{ include "modelgate.listenPort" . }}, protocol: TCP }
  - { name: envoy-status, containerPort: {{ include "modelgate.readinessPort" . }}, protocol: TCP }
  # The admin's /ready, through the readiness listener (the admin is loopback-only).
  startupProbe:
    httpGet: { path: /ready, port: envoy-status }
    periodSeconds: 2
    failureThreshold: 60
  readinessProbe:
    httpGet: { path: /ready, port: envoy-status }
    periodSeconds: 5
    failureThreshold: 2
  livenessProbe:
    httpGet: { path: /live, port: envoy-status }
    periodSeconds: 10
    failureThreshold: 3
  lifecycle:
    # Keep serving while endpoints drop the pod, then stop.
    preStop:
      sleep: { seconds: {{ .Values.envoy.preStopSleepSeconds }} }
  resources:
    {{- toYaml .Values.envoy.resources | nindent 4 }}
  securityContext:
    {{- toYaml .Values.containerSecurityContext | nindent 4 }}
  volumeMounts:
  - { name: socket, mountPath: /run/modelgate }
  - { name: envoy-config, mountPath: {{ include "modelgate.envoyDir" . }}, readOnly: true }
  {{- if eq .Values.tls.svid.source "spire" }}
  - { name: spire-agent-socket, mountPath: {{ include "modelgate.spireDir" . }}, readOnly: true }
  {{- else }}
  - { name: svid, mountPath: {{ include "modelgate.svidDir" . }}, readOnly: true }
  {{- end }}
  {{- if and (eq .Values.tls.trustBundle.source "spire") (ne .Values.tls.svid.source "spire") }}
  - { name: spire-agent-socket, mountPath: {{ include "modelgate.spireDir" . }}, readOnly: true }
  {{- end }}
  {{- if has .Values.tls.trustBundle.source (list "configMap" "secret") }}
  - { name: trust-bundle, mountPath: {{ include "modelgate.trustDir" . }}, readOnly: true }
  {{- end }}
{{- end -}}

{{/* The pod's volumes. */}}
{{- define "modelgate.volumes" -}}
{{- $name := include "modelgate.fullname" . -}}
{{- if eq .Values.mode "gateway" }}
- name: socket
  emptyDir: { medium: Memory, sizeLimit: 1Mi }
{{- end }}
- name: state
  emptyDir: { sizeLimit: 1Gi }
- name: tmp
  emptyDir: { sizeLimit: 64Mi }
- name: config
  configMap:
    name: {{ $name }}-config
    items: [{ key: modelgate.yaml, path: modelgate.yaml }]
- name: policies
  configMap: { name: {{ .Values.policies.existingConfigMap | default (printf "%s-policies" $name) }} }
{{- if eq .Values.mode "gateway" }}
- name: envoy-config
  configMap:
    name: {{ $name }}-config
    items:
    - { key: envoy.yaml, path: envoy.yaml }
    {{- if ne .Values.tls.svid.source "spire" }}
    - { key: sds-svid.yaml, path: sds-svid.yaml }
    {{- end }}
    {{- if ne .Values.tls.trustBundle.source "spire" }}
    - { key: sds-trust.yaml, path: sds-trust.yaml }
    {{- end }}
{{- if eq .Values.tls.svid.source "secret" }}
- name: svid
  secret:
    secretName: {{ .Values.tls.svid.secretName }}
    items: [{ key: tls.crt, path: tls.crt }, { key: tls.key, path: tls.key }]
{{- else if eq .Values.tls.svid.source "certManagerCsi" }}
- name: svid
  csi:
    driver: {{ .Values.tls.certManagerCsi.driver }}
    readOnly: true
    {{- with .Values.tls.certManagerCsi.volumeAttributes }}
    volumeAttributes:
      {{- toYaml . | nindent 6 }}
    {{- end }}
{{- end }}
{{- if or (eq .Values.tls.svid.source "spire") (eq .Values.tls.trustBundle.source "spire") }}
- name: spire-agent-socket
  {{- if eq .Values.tls.spire.socketVolume "csi" }}
  csi: { driver: {{ .Values.tls.spire.csiDriver }}, readOnly: true }
  {{- else }}
  hostPath: { path: {{ .Values.tls.spire.hostPath }}, type: Directory }
  {{- end }}
{{- end }}
{{- if eq .Values.tls.trustBundle.source "configMap" }}
- name: trust-bundle
  configMap:
    name: {{ .Values.tls.trustBundle.configMap }}
    items: [{ key: {{ .Values.tls.trustBundle.key }}, path: {{ .Values.tls.trustBundle.key }} }]
{{- else if eq .Values.tls.trustBundle.source "secret" }}
- name: trust-bundle
  secret:
    secretName: {{ .Values.tls.trustBundle.secret }}
    items: [{ key: {{ .Values.tls.trustBundle.key }}, path: {{ .Values.tls.trustBundle.key }} }]
{{- end }}
{{- end }}
{{- if include "modelgate.hasCredentials" . }}
# Provider credentials from Secrets (and the chart's own), one directory per
# provider and credential: <provider>/<credential>/<key>. A projected volume
# is updated in place (the kubelet swaps its ..data symlink), and modelgate
# reads a changed file again without a restart.
- name: credentials
  projected:
    defaultMode: 288   # 0440: owner and group read
    sources:
    {{- range $pname, $p := .Values.providers }}
    {{- range $c := ($p.credentials | default list) }}
    {{- if $c.secret }}
    - secret:
        name: {{ $c.secret.name }}
        items: [{ key: {{ $c.secret.key | default "api-key" }}, path: {{ printf "%s/%s/%s" $pname $c.name ($c.secret.key | default "api-key") }} }]
    {{- else if $c.value }}
    - secret:
        name: {{ $name }}-credentials
        items: [{ key: {{ printf "%s.%s" $pname $c.name }}, path: {{ printf "%s/%s/value" $pname $c.name }} }]
    {{- end }}
    {{- end }}
    {{- end }}
{{- end }}
{{- if .Values.redis.passwordSecret.name }}
- name: redis-password
  secret:
    secretName: {{ .Values.redis.passwordSecret.name }}
    defaultMode: 288   # 0440: owner and group read
    items: [{ key: {{ .Values.redis.passwordSecret.key }}, path: password }]
{{- end }}
{{- end -}}
