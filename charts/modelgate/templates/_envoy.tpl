{{/*
The Envoy bootstrap: the same structure as envoy/envoy.template.yaml in the
repository (mTLS listener, ext_proc to modelgate over a Unix socket, failing
closed), with TLS upstream clusters for real providers and a health listener
that is ready only while modelgate answers its gRPC health check.
*/}}
{{- define "modelgate.envoy" -}}
admin:
  address:
    socket_address: { address: 127.0.0.1, port_value: 9901 }
static_resources:
  listeners:
  - name: workloads
    address:
      socket_address: { address: 0.0.0.0, port_value: 8443 }
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
            tls_certificates:
            - certificate_chain: { filename: /etc/envoy/tls/tls.crt }
              private_key: { filename: /etc/envoy/tls/tls.key }
            validation_context:
              trusted_ca: { filename: /etc/envoy/trust/{{ .Values.tls.trustBundle.key }} }
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
                  path: "%REQ(:PATH)%"
                  status: "%RESPONSE_CODE%"
                  details: "%RESPONSE_CODE_DETAILS%"
                  upstream: "%UPSTREAM_CLUSTER%"
                  duration_ms: "%DURATION%"
                  decision_id: "%DYNAMIC_METADATA(modelgate:decision_id)%"
                  spiffe_id: "%DYNAMIC_METADATA(modelgate:spiffe_id)%"
          route_config:
            name: providers
            virtual_hosts:
            - name: providers
              domains: ["*"]
              routes:
              {{- range .Values.providers }}
              - name: {{ .name }}
                match: {{ toJson .match }}
                route:
                  cluster: provider-{{ .name }}
                  timeout: 300s
                  auto_host_rewrite: true
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
              - response_body_mode: STREAMED
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
  - name: health
    address:
      socket_address: { address: 0.0.0.0, port_value: 8081 }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: health
          route_config:
            virtual_hosts:
            - name: health
              domains: ["*"]
              routes:
              - match: { prefix: / }
                direct_response: { status: 404 }
          http_filters:
          # Ready only while modelgate passes Envoy's gRPC health check.
          - name: envoy.filters.http.health_check
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.health_check.v3.HealthCheck
              pass_through_mode: false
              headers:
              - name: ":path"
                string_match: { exact: /ready }
              cluster_min_healthy_percentages:
                modelgate: { value: 100 }
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
  {{- range .Values.providers }}
  - name: provider-{{ .name }}
    type: LOGICAL_DNS
    dns_lookup_family: V4_PREFERRED
    connect_timeout: 5s
    per_connection_buffer_limit_bytes: {{ int $.Values.envoy.maxBodyBytes }}
    load_assignment:
      cluster_name: provider-{{ .name }}
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { socket_address: { address: {{ .host }}, port_value: {{ int .port }} } } }
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
            - san_type: DNS
              matcher: { exact: {{ .host }} }
    {{- end }}
  {{- end }}
{{- end -}}
