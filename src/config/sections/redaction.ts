/** `redaction`: detectors and what happens to the data they find. */
export interface RedactionConfig {
  enabled: boolean
}

export const redactionSchema = {
  type: 'object',
  additionalProperties: false,
  default: {},
  properties: {
    enabled: { type: 'boolean', default: true },
  },
} as const
