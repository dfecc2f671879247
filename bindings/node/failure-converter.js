'use strict';
// The failure converter dataConverter() names by path (the TypeScript SDK loads it by path, in
// workflow bundles too): Temporal's default one, with messages and stack traces moved into
// encoded attributes, which tcodec seals.
const { DefaultFailureConverter } = require('@temporalio/common');

exports.failureConverter = new DefaultFailureConverter({ encodeCommonAttributes: true });
