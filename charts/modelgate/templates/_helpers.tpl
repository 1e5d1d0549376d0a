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
{{/* The SVID volume in modelgate, when an OAuth credential needs it as a client certificate. */}}
{{- define "modelgate.modelgateSvidDir" -}}/etc/modelgate/svid{{- end -}}
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
{{- $providers := deepCopy (default dict $cfg.providers) -}}
{{- $_ := set $providers "catalog" (include "modelgate.catalog" . | fromJson) -}}
{{- $_ := set $cfg "providers" $providers -}}
{{- /* redis.address: quota counters, agent sessions and approvals shared by every replica, unless config.quotas says otherwise. */ -}}
{{- if .Values.redis.address -}}
{{- $quotas := default dict $cfg.quotas -}}
{{- if not (hasKey $quotas "store") -}}{{- $_ := set $quotas "store" "redis" -}}{{- end -}}
{{- $redis := default dict $quotas.redis -}}
{{- if not $redis.url -}}{{- $_ := set $redis "url" (printf "redis://%s" .Values.redis.address) -}}{{- end -}}
{{- if and .Values.redis.passwordSecret.name (not $redis.passwordFile) -}}{{- $_ := set $redis "passwordFile" "/etc/modelgate/redis/password" -}}{{- end -}}
{{- $_ := set $quotas "redis" $redis -}}
{{- $_ := set $cfg "quotas" $quotas -}}
{{- end -}}
{{- toYaml $cfg -}}
{{- end -}}

{{/*
The provider catalog as modelgate reads it (providers.catalog): the
`providers` values as given, except that a credential kept in a Secret
(`secret`) or given as a value (`value`, kept in the chart's Secret) becomes
the file it is mounted as: <credentialDir>/<provider>/<credential>/<key>.
*/}}
{{- define "modelgate.catalog" -}}
{{- $out := dict -}}
{{- range $name, $p := .Values.providers -}}
{{- $entry := omit (deepCopy $p) "credentials" -}}
{{- if hasKey $p "credentials" -}}
{{- $creds := list -}}
{{- range $c := $p.credentials -}}
{{- $cc := omit (deepCopy $c) "secret" "value" -}}
{{- $file := include "modelgate.credentialFile" (dict "root" $ "provider" $name "credential" $c) -}}
{{- if $file -}}{{- $_ := set $cc "file" $file -}}{{- end -}}
{{- $creds = append $creds $cc -}}
{{- end -}}
{{- $_ := set $entry "credentials" $creds -}}
{{- end -}}
{{- $_ := set $out $name $entry -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}

{{/* Where a credential from a Secret or a value is mounted in modelgate ('' for the other sources). */}}
{{- define "modelgate.credentialFile" -}}
{{- $c := .credential -}}
{{- if $c.secret -}}
{{- printf "%s/%s/%s/%s" (include "modelgate.credentialDir" .root) .provider $c.name ($c.secret.key | default "api-key") -}}
{{- else if $c.value -}}
{{- printf "%s/%s/%s/value" (include "modelgate.credentialDir" .root) .provider $c.name -}}
{{- end -}}
{{- end -}}

{{/* Credentials the chart keeps in its own Secret, by key <provider>.<credential>. */}}
{{- define "modelgate.chartCredentials" -}}
{{- range $name, $p := .Values.providers -}}
{{- range $c := ($p.credentials | default list) -}}
{{- if $c.value }}
{{ printf "%s.%s" $name $c.name }}: {{ $c.value | b64enc }}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* true when any credential comes from a Secret or a value (the credentials volume is mounted). */}}
{{- define "modelgate.hasCredentials" -}}
{{- range $name, $p := .Values.providers -}}
{{- range $c := ($p.credentials | default list) -}}
{{- if or $c.secret $c.value -}}true{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* true when any credential is an OAuth token (modelgate then mounts the SVID). */}}
{{- define "modelgate.usesOAuth" -}}
{{- range $name, $p := .Values.providers -}}
{{- range $c := ($p.credentials | default list) -}}
{{- if $c.oauth -}}true{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
Each provider's upstream, parsed: {name, kind, tls, host, port, path, ip}
by provider name (the same parse as parseUpstream in src/providers/catalog.ts).
*/}}
{{- define "modelgate.upstreams" -}}
{{- $out := dict -}}
{{- range $name, $p := .Values.providers -}}
{{- $u := urlParse $p.upstream -}}
{{- $tls := eq $u.scheme "https" -}}
{{- $hp := splitList ":" $u.host -}}
{{- $host := first $hp -}}
{{- $port := ternary 443 80 $tls -}}
{{- if gt (len $hp) 1 -}}{{- $port = last $hp | int -}}{{- end -}}
{{- $path := ternary "" $u.path (eq $u.path "/") -}}
{{- $ip := regexMatch "^[0-9]{1,3}([.][0-9]{1,3}){3}$" $host -}}
{{- $_ := set $out $name (dict "name" $name "kind" $p.kind "tls" $tls "host" $host "port" $port "path" $path "ip" $ip) -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}

{{/*
Every provider's Envoy routes in Envoy's order (exact paths first, then
prefixes; longest first; then by the path), each {name, match, rewrite}: the
same routes as providerRoutes/orderedRoutes in src/providers/envoy.ts
(test/integration/envoy-contract.test.ts compares them).
*/}}
{{- define "modelgate.providerRoutes" -}}
{{- $ups := include "modelgate.upstreams" . | fromJson -}}
{{- $keyed := dict -}}
{{- range $name, $p := .Values.providers -}}
{{- $up := (get $ups $name).path -}}
{{- $root := or (not (hasKey $p "root")) $p.root -}}
{{- $bases := list -}}
{{- if hasKey $p "basePaths" -}}{{- $bases = $p.basePaths -}}{{- else if eq $p.kind "openai" -}}{{- $bases = list "/openai" "/api" -}}{{- end -}}
{{- $routes := list -}}
{{- if eq $p.kind "anthropic" -}}
{{- if $root -}}{{- $routes = append $routes (dict "type" "path" "m" "/v1/messages" "c" "/v1/messages") -}}{{- end -}}
{{- range $b := $bases -}}{{- $routes = append $routes (dict "type" "path" "m" (printf "%s/v1/messages" $b) "c" "/v1/messages") -}}{{- end -}}
{{- else -}}
{{- if $root -}}
{{- if eq $p.kind "azure-openai" -}}
{{- $routes = append $routes (dict "type" "prefix" "m" "/openai/deployments/" "c" "/openai/deployments/") -}}
{{- else -}}
{{- $routes = append $routes (dict "type" "prefix" "m" "/v1/" "c" "/v1/") -}}
{{- end -}}
{{- end -}}
{{- range $b := $bases -}}{{- $routes = append $routes (dict "type" "prefix" "m" (printf "%s/v1/" $b) "c" "/v1/") -}}{{- end -}}
{{- end -}}
{{- range $r := $routes -}}
{{- $rewrite := printf "%s%s" $up $r.c -}}
{{- $route := dict "name" $name "match" (dict $r.type $r.m) -}}
{{- if ne $rewrite $r.m -}}{{- $_ := set $route "rewrite" $rewrite -}}{{- end -}}
{{- $key := printf "%d-%05d-%s" (ternary 0 1 (eq $r.type "path")) (sub 10000 (len $r.m)) $r.m -}}
{{- if hasKey $keyed $key -}}
{{- fail (printf "providers: %q and %q both serve %s %s; give one of them root: false or other basePaths" (get $keyed $key).name $name $r.type $r.m) -}}
{{- end -}}
{{- $_ := set $keyed $key $route -}}
{{- end -}}
{{- end -}}
{{- $ordered := list -}}
{{- range (keys $keyed | sortAlpha) -}}{{- $ordered = append $ordered (get $keyed .) -}}{{- end -}}
{{- toJson $ordered -}}
{{- end -}}

{{/* The TCP ports the pod reaches providers and token endpoints on (the egress NetworkPolicy). */}}
{{- define "modelgate.providerPorts" -}}
{{- $ports := list -}}
{{- if eq .Values.mode "gateway" -}}
{{- range (include "modelgate.upstreams" . | fromJson) -}}{{- $ports = append $ports (int .port) -}}{{- end -}}
{{- end -}}
{{- range $name, $p := .Values.providers -}}
{{- range $c := ($p.credentials | default list) -}}
{{- if $c.oauth -}}
{{- $u := urlParse $c.oauth.tokenUrl -}}
{{- $hp := splitList ":" $u.host -}}
{{- $ports = append $ports (ternary (last $hp | int) 443 (gt (len $hp) 1)) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- toJson ($ports | uniq) -}}
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
