{{/*
The Envoy bootstrap: the same structure as envoy/envoy.template.yaml in the
repository (mTLS listener, ext_proc to modelgate over a Unix socket, failing
closed), with TLS upstream clusters for real providers, the listener's SVID
and trust bundle through SDS (files or the SPIRE agent), and a readiness
listener that answers the admin's /ready (the admin itself listens on
loopback only).
*/}}
{{- define "modelgate.envoy" -}}
# SDS needs a node identity (file-based SDS refuses to start without one).
node: { id: {{ include "modelgate.fullname" . }}, cluster: {{ include "modelgate.fullname" . }} }
admin:
  # Loopback only: the readiness listener forwards GET /ready (and, with
  # metrics on, GET /stats/prometheus) here, nothing else.
  address:
    socket_address: { address: 127.0.0.1, port_value: {{ include "modelgate.adminPort" . }} }
# Envoy half-closes each ext_proc stream once the exchange is over and waits for
# modelgate's status instead of resetting it (a flood of resets makes Node's
# HTTP/2 layer end the connection, and the streams on it fail with 500).
layered_runtime:
  layers:
  - name: static
    static_layer:
      envoy.reloadable_features.ext_proc_graceful_grpc_close: true
      # How long Envoy waits for that status before it resets the stream anyway (default 1 s):
      # room for a busy event loop, so an answered stream is not reset for being late to close.
      envoy.filters.http.ext_proc.remote_close_timeout_milliseconds: 5000
static_resources:
  listeners:
  - name: workloads
    address:
      socket_address: { address: 0.0.0.0, port_value: {{ include "modelgate.listenPort" . }} }
    per_connection_buffer_limit_bytes: {{ int .Values.envoy.maxBodyBytes }}
    filter_chains:
    - transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          require_client_certificate: true
          common_tls_context:
            alpn_protocols: [h2, http/1.1]
            tls_params: { tls_minimum_protocol_version: TLSv1_2 }
            # The listener's SVID and the trust bundle arrive through SDS, so a
            # rotated certificate or bundle is taken up without a restart; the
            # listener is not ready (nor is /ready) before both have arrived.
            tls_certificate_sds_secret_configs:
            - {{ include "modelgate.sdsRef" (dict "root" . "kind" "svid") }}
            validation_context_sds_secret_config: {{ include "modelgate.sdsRef" (dict "root" . "kind" "trust") }}
      filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: workloads
          forward_client_cert_details: SANITIZE_SET
          set_current_client_cert_details: { uri: true }
          use_remote_address: true
          early_header_mutation_extensions:
          - name: envoy.http.early_header_mutation.header_mutation
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.http.early_header_mutation.header_mutation.v3.HeaderMutation
              mutations:
              - remove: x-request-id
          generate_request_id: true
          preserve_external_request_id: false
          # The caller learns the id its audit record is filed under.
          always_set_request_id_in_response: true
          stream_idle_timeout: 300s
          request_timeout: 0s
          access_log:
          - name: envoy.access_loggers.stdout
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog
              log_format:
                json_format:
                  time: "%START_TIME%"
                  request_id: "%REQ(X-REQUEST-ID)%"
                  method: "%REQ(:METHOD)%"
                  # The route's template as modelgate recognised it, never the raw path.
                  path: "%DYNAMIC_METADATA(modelgate:path)%"
                  route: "%ROUTE_NAME%"
                  status: "%RESPONSE_CODE%"
                  details: "%RESPONSE_CODE_DETAILS%"
                  upstream: "%UPSTREAM_CLUSTER%"
                  duration_ms: "%DURATION%"
                  decision_id: "%DYNAMIC_METADATA(modelgate:decision_id)%"
                  spiffe_id: "%DYNAMIC_METADATA(modelgate:spiffe_id)%"
          # Envoy's own answers get a JSON error body in the API's dialect, the request
          # id and an x-modelgate-error code; modelgate's denials pass unchanged (the same
          # mappers as envoy/envoy.template.yaml).
          local_reply_config:
            mappers:
            - filter:
                or_filter:
                  filters:
                  - extension_filter:
                      name: envoy.access_loggers.extension_filters.cel
                      typed_config:
                        "@type": type.googleapis.com/envoy.extensions.access_loggers.filters.cel.v3.ExpressionFilter
                        expression: "response.code_details.startsWith('modelgate_')"
                  - metadata_filter:
                      matcher:
                        filter: modelgate
                        path: [{ key: error_code }]
                        value: { present_match: true }
                      # A request without the key is not one of modelgate's denials.
                      match_if_key_not_found: false
            {{- range (include "modelgate.localReplies" . | fromYamlArray) }}
            - filter:
                extension_filter:
                  name: envoy.access_loggers.extension_filters.cel
                  typed_config:
                    "@type": type.googleapis.com/envoy.extensions.access_loggers.filters.cel.v3.ExpressionFilter
                    expression: {{ printf "%s && request.url_path.startsWith('/v1/messages')" .when | quote }}
              headers_to_add:
              - header: { key: x-modelgate-error, value: {{ .code }} }
                append_action: OVERWRITE_IF_EXISTS_OR_ADD
              - header: { key: request-id, value: "%REQ(X-REQUEST-ID)%" }
                append_action: OVERWRITE_IF_EXISTS_OR_ADD
              body_format_override:
                json_format:
                  type: error
                  error: { type: {{ .anthropic }}, message: {{ .message | quote }} }
                  request_id: "%REQ(X-REQUEST-ID)%"
            - filter:
                extension_filter:
                  name: envoy.access_loggers.extension_filters.cel
                  typed_config:
                    "@type": type.googleapis.com/envoy.extensions.access_loggers.filters.cel.v3.ExpressionFilter
                    expression: {{ .when | quote }}
              headers_to_add:
              - header: { key: x-modelgate-error, value: {{ .code }} }
                append_action: OVERWRITE_IF_EXISTS_OR_ADD
              body_format_override:
                json_format:
                  error: { type: modelgate_error, code: {{ .code }}, message: {{ .message | quote }}, request_id: "%REQ(X-REQUEST-ID)%" }
            {{- end }}
          route_config:
            name: providers
            virtual_hosts:
            - name: providers
              domains: ["*"]
              routes:
              # The catalog's routes (`providers`), exact paths first, then prefixes
              # longest first: /v1/messages must not fall into a /v1/ prefix route.
              # Envoy routes nowhere else: no route, no upstream (404 below).
              {{- range (include "modelgate.providerRoutes" . | fromJsonArray) }}
              - name: {{ .name }}
                match: {{ toJson .match }}
                route:
                  cluster: provider-{{ .name }}
                  timeout: 300s
                  auto_host_rewrite: true
                  {{- if .rewrite }}
                  prefix_rewrite: {{ .rewrite | quote }}
                  {{- end }}
                typed_per_filter_config:
                  envoy.filters.http.ext_proc:
                    "@type": type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExtProcPerRoute
                    overrides:
                      grpc_initial_metadata: [{ key: x-modelgate-provider, value: {{ .name | quote }} }]
              {{- end }}
              - name: unknown
                match: { prefix: / }
                direct_response: { status: 404 }
          http_filters:
          - name: envoy.filters.http.ext_proc
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor
              grpc_service:
                envoy_grpc: { cluster_name: modelgate }
              failure_mode_allow: false
              message_timeout: {{ .Values.envoy.messageTimeout }}
              processing_mode:
                request_header_mode: SEND
                response_header_mode: SEND
                request_body_mode: BUFFERED
                response_body_mode: BUFFERED
                request_trailer_mode: SKIP
                response_trailer_mode: SKIP
              allow_mode_override: true
              allowed_override_modes:
              - { response_header_mode: SEND, response_body_mode: STREAMED, request_trailer_mode: SKIP, response_trailer_mode: SKIP }
              mutation_rules:
                disallow_is_error: true
              request_attributes:
              - connection.mtls
              - connection.uri_san_peer_certificate
              - connection.peer_certificate
              - connection.sha256_peer_certificate_digest
              - request.id
              - request.time
              - xds.route_name
              metadata_options:
                receiving_namespaces: { untyped: [modelgate] }
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  # Kubelet's probes: GET /ready is the admin's readiness (200 only while Envoy
  # is LIVE: initialised, SVID and trust bundle loaded, not shutting down), GET
  # /live answers while Envoy serves HTTP at all. Nothing else of the admin is
  # reachable from the pod network.
  - name: readiness
    address:
      socket_address: { address: 0.0.0.0, port_value: {{ include "modelgate.readinessPort" . }} }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: readiness
          route_config:
            name: readiness
            virtual_hosts:
            - name: readiness
              domains: ["*"]
              routes:
              - match: { path: /ready, headers: [{ name: ":method", string_match: { exact: GET } }] }
                route: { cluster: envoy_admin, timeout: 2s }
              {{- if .Values.metrics.enabled }}
              - match: { path: /stats/prometheus, headers: [{ name: ":method", string_match: { exact: GET } }] }
                route: { cluster: envoy_admin, timeout: 5s }
              {{- end }}
              - match: { path: /live }
                direct_response: { status: 200 }
              - match: { prefix: / }
                direct_response: { status: 404 }
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: modelgate
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: modelgate
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { pipe: { path: {{ include "modelgate.socket" . }} } } }
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        # Below nghttp2's allowance of 1000 stream resets per connection: no connection can
        # use it up, whatever a fault makes Envoy reset.
        common_http_protocol_options: { max_requests_per_connection: 500 }
        explicit_http_config:
          http2_protocol_options:
            max_concurrent_streams: 100000
    circuit_breakers:
      thresholds:
      - priority: DEFAULT
        max_connections: 100000
        max_pending_requests: 100000
        max_requests: 100000
        max_retries: 3
    health_checks:
    - timeout: 1s
      interval: 2s
      unhealthy_threshold: 2
      healthy_threshold: 1
      grpc_health_check: { service_name: envoy.service.ext_proc.v3.ExternalProcessor }
  - name: envoy_admin
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: envoy_admin
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: {{ include "modelgate.adminPort" . }} } } }
  {{- if or (eq .Values.tls.svid.source "spire") (eq .Values.tls.trustBundle.source "spire") }}
  # The SPIRE agent's Workload API socket also serves Envoy's SDS.
  - name: spire_agent
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: spire_agent
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { pipe: { path: {{ printf "%s/%s" (include "modelgate.spireDir" .) .Values.tls.spire.socketName }} } } }
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: { http2_protocol_options: {} }
  {{- end }}
  {{- range (include "modelgate.upstreams" . | fromJson) }}
  - name: provider-{{ .name }}
    type: {{ ternary "STATIC" "LOGICAL_DNS" .ip }}
    {{- if not .ip }}
    dns_lookup_family: V4_PREFERRED
    {{- end }}
    connect_timeout: 5s
    per_connection_buffer_limit_bytes: {{ int $.Values.envoy.maxBodyBytes }}
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        # Below the provider's keep-alive timeout, so Envoy never reuses a connection the provider is closing.
        common_http_protocol_options: { idle_timeout: {{ $.Values.envoy.providerIdleTimeout }} }
        explicit_http_config: { http_protocol_options: {} }
    load_assignment:
      cluster_name: provider-{{ .name }}
      endpoints:
      - lb_endpoints:
        # The hostname is what auto_host_rewrite puts in the Host header.
        - endpoint: { hostname: {{ .host }}, address: { socket_address: { address: {{ .host }}, port_value: {{ int .port }} } } }
    {{- if .tls }}
    transport_socket:
      name: envoy.transport_sockets.tls
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
        sni: {{ .host }}
        common_tls_context:
          validation_context:
            trusted_ca: { filename: /etc/ssl/certs/ca-certificates.crt }
            match_typed_subject_alt_names:
            - san_type: {{ ternary "IP_ADDRESS" "DNS" .ip }}
              matcher: { exact: {{ .host }} }
    {{- end }}
  {{- end }}
{{- end -}}


{{/*
Envoy's own answers and the modelgate error code each gets (src/errors.ts):
`when` is a CEL condition on the local reply; `anthropic` the Anthropic error
type for /v1/messages; `message` the catalog's message. Order matters: the
first match wins.
*/}}
{{- define "modelgate.localReplies" -}}
- code: MG_GATEWAY_TIMEOUT
  when: "response.code == 504 && response.code_details.startsWith('ext_proc_error')"
  anthropic: api_error
  message: "The policy check did not answer in time, so the request is refused."
- code: MG_GATEWAY_ERROR
  when: "response.code_details.startsWith('ext_proc_error')"
  anthropic: api_error
  message: "The policy check could not be completed, so the request is refused."
- code: MG_BODY_TOO_LARGE
  when: "response.code == 413"
  anthropic: request_too_large
  message: "The request body is larger than the configured limit."
- code: MG_HEADERS_TOO_LARGE
  when: "response.code == 431"
  anthropic: invalid_request_error
  message: "The request headers are larger than the gateway accepts."
- code: MG_UPSTREAM_TIMEOUT
  when: "response.code == 504"
  anthropic: api_error
  message: "The model provider did not answer in time."
- code: MG_UPSTREAM_UNAVAILABLE
  when: "response.code == 503"
  anthropic: api_error
  message: "The model provider cannot be reached right now; retry later."
- code: MG_ROUTE_UNSUPPORTED
  when: "response.code == 404"
  anthropic: not_found_error
  message: "This API path is not one modelgate knows how to inspect."
- code: MG_GATEWAY_ERROR
  when: "response.code >= 500"
  anthropic: api_error
  message: "The policy check could not be completed, so the request is refused."
- code: MG_REQUEST_REJECTED
  when: "response.code >= 400"
  anthropic: invalid_request_error
  message: "The gateway could not accept the request as sent."
{{- end -}}



{{/*
An SDS reference for the listener's SVID (kind "svid") or trust bundle (kind
"trust"): a resource of the SPIRE agent (no initial fetch timeout: Envoy stays
not ready until the agent has answered), or a file-based SDS resource (the
files below) whose certificate files Envoy watches and reloads.
*/}}
{{- define "modelgate.sdsRef" -}}
{{- $v := .root.Values.tls -}}
{{- $source := ternary $v.svid.source $v.trustBundle.source (eq .kind "svid") -}}
{{- if eq $source "spire" -}}
{{- $name := ternary $v.spire.svidName $v.spire.bundleName (eq .kind "svid") -}}
{ name: {{ $name | quote }}, sds_config: { resource_api_version: V3, initial_fetch_timeout: 0s, api_config_source: { api_type: GRPC, transport_api_version: V3, grpc_services: [{ envoy_grpc: { cluster_name: spire_agent } }] } } }
{{- else -}}
{ name: {{ .kind }}, sds_config: { resource_api_version: V3, path_config_source: { path: {{ printf "%s/sds-%s.yaml" (include "modelgate.envoyDir" .root) .kind }} } } }
{{- end -}}
{{- end -}}

{{/* The file-based SDS resource for the listener's SVID (files from a Secret or csi-driver-spiffe). */}}
{{- define "modelgate.sdsSvid" -}}
{{- $dir := include "modelgate.svidDir" . -}}
resources:
- "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret
  name: svid
  tls_certificate:
    certificate_chain: { filename: {{ $dir }}/tls.crt }
    private_key: { filename: {{ $dir }}/tls.key }
    # Kubernetes swaps a volume's files by renaming a directory: a move here reloads both.
    watched_directory: { path: {{ $dir }} }
{{- end -}}

{{/* The file-based SDS resource for the trust bundle (ConfigMap, Secret, or csi-driver-spiffe's ca.crt). */}}
{{- define "modelgate.sdsTrust" -}}
{{- $dir := ternary (include "modelgate.svidDir" .) (include "modelgate.trustDir" .) (eq .Values.tls.trustBundle.source "certManagerCsi") -}}
{{- $file := ternary "ca.crt" .Values.tls.trustBundle.key (eq .Values.tls.trustBundle.source "certManagerCsi") -}}
resources:
- "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret
  name: trust
  validation_context:
    trusted_ca: { filename: {{ $dir }}/{{ $file }} }
    watched_directory: { path: {{ $dir }} }
{{- end -}}
