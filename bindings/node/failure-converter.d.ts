import type { FailureConverter } from '@temporalio/common';

/** Temporal's default failure converter with `encodeCommonAttributes: true`. */
export declare const failureConverter: FailureConverter;
