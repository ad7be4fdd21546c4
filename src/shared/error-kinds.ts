/**
 * The kinds of errors a user must fix. Each is the Temporal failure type of a non-retryable
 * failure: `UserError.kind` is typed by this list and the workflow's retry policies use it, so
 * a new kind is added here once and is final everywhere. Imports nothing (workflow-safe).
 */
export const USER_ERROR_KINDS = [
  'UserError',
  'ConfigError',
  'ConfigChanged',
  'InvalidJobName',
  'InvalidInput',
  'CheckpointError',
  'SafetensorsError',
  'DataError',
  'ConvertError',
  'NonFiniteLoss',
  'Interrupted',
  'SearchAttributesMissing',
  'ConnectionError',
  'SlurmError',
  'EngineError',
] as const;

export type UserErrorKind = (typeof USER_ERROR_KINDS)[number];
