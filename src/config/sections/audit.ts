/** `audit`: the OpenTelemetry audit trail. Exporter endpoints come from the standard OTEL_* variables. */
export interface AuditConfig {
  enabled: boolean
}

export const auditSchema = {
  type: 'object',
  additionalProperties: false,
  default: {},
  properties: {
    enabled: { type: 'boolean', default: true },
  },
} as const
