/** Failure types that are never retried: errors a user must fix. Shared by workflow and activities. */
export const NON_RETRYABLE = [
  'UserError',
  'ConfigError',
  'InvalidJobName',
  'InvalidInput',
  'CheckpointError',
  'SafetensorsError',
  'ConfigChanged',
  'DataError',
  'ConvertError',
];
