{{- define "modelgate.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "modelgate.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "modelgate.labels" -}}
app.kubernetes.io/name: {{ include "modelgate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "modelgate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "modelgate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "modelgate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "modelgate.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* An image reference: repository, then @digest when given, else :tag. */}}
{{- define "modelgate.image" -}}
{{- if .image.digest -}}
{{- printf "%s@%s" .image.repository .image.digest -}}
{{- else -}}
{{- printf "%s:%s" .image.repository (.image.tag | default .default) -}}
{{- end -}}
{{- end -}}

{{- define "modelgate.socket" -}}/run/modelgate/ext_proc.sock{{- end -}}
{{- define "modelgate.configDir" -}}/etc/modelgate/config{{- end -}}
{{- define "modelgate.policyDir" -}}/etc/modelgate/policies{{- end -}}
{{- define "modelgate.credentialDir" -}}/etc/modelgate/credentials{{- end -}}
{{- define "modelgate.stateDir" -}}/var/lib/modelgate{{- end -}}
{{/* Envoy's files: the bootstrap and SDS files (ConfigMap), the SVID and the trust bundle. */}}
{{- define "modelgate.envoyDir" -}}/etc/envoy/config{{- end -}}
{{- define "modelgate.svidDir" -}}/etc/envoy/svid{{- end -}}
{{- define "modelgate.trustDir" -}}/etc/envoy/trust{{- end -}}
{{- define "modelgate.spireDir" -}}/spiffe-workload-api{{- end -}}
{{/* Envoy's ports: the workload listener, the readiness listener, the loopback-only admin. */}}
{{- define "modelgate.listenPort" -}}8443{{- end -}}
{{- define "modelgate.readinessPort" -}}8081{{- end -}}
{{- define "modelgate.adminPort" -}}9901{{- end -}}

{{/* The address modelgate serves ext_proc on: the shared socket, or a TCP port in mode processor. */}}
{{- define "modelgate.listen" -}}
{{- if eq .Values.mode "processor" -}}
{{- printf "0.0.0.0:%d" (int .Values.processor.port) -}}
{{- else -}}
{{- printf "unix://%s" (include "modelgate.socket" .) -}}
{{- end -}}
{{- end -}}

{{/* Where `modelgate health` asks from inside the pod. */}}
{{- define "modelgate.healthAddress" -}}
{{- if eq .Values.mode "processor" -}}
{{- printf "127.0.0.1:%d" (int .Values.processor.port) -}}
{{- else -}}
{{- printf "unix://%s" (include "modelgate.socket" .) -}}
{{- end -}}
{{- end -}}

{{/* The modelgate configuration: the user's values with the chart-owned settings on top. */}}
{{- define "modelgate.config" -}}
{{- $cfg := deepCopy .Values.config -}}
{{- $server := default dict $cfg.server -}}
{{- $_ := set $server "listen" (include "modelgate.listen" .) -}}
{{- $_ := set $server "maxBodyBytes" (int .Values.envoy.maxBodyBytes) -}}
{{- if .Values.metrics.enabled -}}
{{- $_ := set $server "metricsListen" (printf "0.0.0.0:%d" (int .Values.metrics.port)) -}}
{{- end -}}
{{- $_ := set $cfg "server" $server -}}
{{- $policy := default dict $cfg.policy -}}
{{- $_ := set $policy "dir" (include "modelgate.policyDir" .) -}}
{{- $_ := set $cfg "policy" $policy -}}
{{- $audit := default dict $cfg.audit -}}
{{- $spool := default dict $audit.spool -}}
{{- if not $spool.dir -}}
{{- $_ := set $spool "dir" (printf "%s/spool" (include "modelgate.stateDir" .)) -}}
{{- end -}}
{{- $_ := set $audit "spool" $spool -}}
{{- $_ := set $cfg "audit" $audit -}}
{{- $routes := dict -}}
{{- range .Values.providers -}}
{{- $_ := set $routes .name (dict "kind" .kind) -}}
{{- end -}}
{{- $_ := set $cfg "providers" (dict "routes" $routes) -}}
{{- toYaml $cfg -}}
{{- end -}}

{{/* Providers whose credential the chart keeps in its own Secret. */}}
{{- define "modelgate.chartCredentials" -}}
{{- range .Values.providers -}}
{{- if and .credential .credential.value }}
{{ .name }}: {{ .credential.value | b64enc }}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* true when any provider has a credential (the credentials volume is mounted). */}}
{{- define "modelgate.hasCredentials" -}}
{{- range .Values.providers -}}
{{- if and .credential (or .credential.value .credential.existingSecret) -}}true{{- end -}}
{{- end -}}
{{- end -}}

{{/* The OTLP collector's port, from otlp.endpoint (scheme default when none is written). */}}
{{- define "modelgate.otlpPort" -}}
{{- $u := urlParse .Values.otlp.endpoint -}}
{{- $hostPort := splitList ":" $u.host -}}
{{- if gt (len $hostPort) 1 -}}{{ last $hostPort }}{{- else if eq $u.scheme "https" -}}443{{- else -}}80{{- end -}}
{{- end -}}

{{- define "modelgate.redisPort" -}}
{{- last (splitList ":" .Values.redis.address) -}}
{{- end -}}

{{/* The ext_proc filter of the chart's own Envoy (workloads listener), for the mesh objects. */}}
{{- define "modelgate.extProcFilter" -}}
{{- $envoy := include "modelgate.envoy" . | fromYaml -}}
{{- range $envoy.static_resources.listeners -}}
{{- if eq .name "workloads" -}}
{{- range (index .filter_chains 0).filters -}}
{{- if eq .name "envoy.filters.network.http_connection_manager" -}}
{{- range .typed_config.http_filters -}}
{{- if eq .name "envoy.filters.http.ext_proc" -}}
{{- toYaml . -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
