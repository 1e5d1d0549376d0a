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

{{- define "modelgate.socket" -}}/run/modelgate/ext_proc.sock{{- end -}}

{{/* The modelgate configuration: the user's values with the chart-owned settings on top. */}}
{{- define "modelgate.config" -}}
{{- $cfg := deepCopy .Values.config -}}
{{- $server := merge (dict "listen" (printf "unix://%s" (include "modelgate.socket" .)) "maxBodyBytes" (int .Values.envoy.maxBodyBytes)) (default dict $cfg.server) -}}
{{- $_ := set $server "listen" (printf "unix://%s" (include "modelgate.socket" .)) -}}
{{- $_ := set $server "maxBodyBytes" (int .Values.envoy.maxBodyBytes) -}}
{{- $_ := set $cfg "server" $server -}}
{{- $policy := default dict $cfg.policy -}}
{{- $_ := set $policy "dir" "/etc/modelgate/policies" -}}
{{- $_ := set $cfg "policy" $policy -}}
{{- $routes := dict -}}
{{- range .Values.providers -}}
{{- $_ := set $routes .name (dict "kind" .kind) -}}
{{- end -}}
{{- $_ := set $cfg "providers" (dict "routes" $routes) -}}
{{- toYaml $cfg -}}
{{- end -}}
