"""tcodec for the Temporal Python SDK: a ``PayloadCodec`` and a ``DataConverter``."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import List, Sequence

import temporalio.converter
from temporalio.api.common.v1 import Payload

from tcodec._native import Codec


#: Batches up to this many serialized bytes run on the event loop's thread (with the GIL
#: released) when their keys are in memory. Measured (BENCHMARKS.md), the hop to the executor
#: costs more than the work up to batches of megabytes: the batch is made on one core and read
#: back on another (100 payloads of 64 KiB: 17,700 a second on the loop's thread, 9,700 to
#: 12,300 through the executor). Work on the loop holds it 7 to 10 ms for 8 MiB (compression
#: off, on); Temporal's payload limit is 2 MB. Larger batches, and any that needs a key
#: unwrapped (a KMS call), go to the loop's executor.
INLINE_BYTES = 8 << 20


class PayloadCodec(temporalio.converter.PayloadCodec):
    """Seals every payload the SDK sends and opens what it receives, in Rust, a batch at a
    time, with the GIL released: small batches whose keys are in memory on the event loop's
    thread, the rest on its executor (`inline_bytes` sets the bound; 0 sends every batch to the
    executor). A payload tcodec did not seal is refused unless the codec's decode policy allows
    it."""

    def __init__(self, codec: Codec, *, inline_bytes: int = INLINE_BYTES) -> None:
        self.codec = codec
        self.inline_bytes = inline_bytes

    # The Rust side takes the payload messages themselves: it serializes, seals or opens and
    # parses a batch a step of about 256 KiB at a time, while the step's bytes are still in the
    # core's cache (BENCHMARKS.md).

    async def encode(self, payloads: Sequence[Payload]) -> List[Payload]:
        out = self.codec.try_encode(payloads, self.inline_bytes)
        if out is None:
            out = await asyncio.get_running_loop().run_in_executor(None, self.codec.encode, payloads)
        return out

    async def decode(self, payloads: Sequence[Payload]) -> List[Payload]:
        out = self.codec.try_decode(payloads, self.inline_bytes)
        if out is None:
            out = await asyncio.get_running_loop().run_in_executor(None, self.codec.decode, payloads)
        return out


def data_converter(codec: Codec) -> temporalio.converter.DataConverter:
    """The SDK's default converter with tcodec as its payload codec and failure messages and
    stack traces moved into encoded (so sealed) attributes."""
    return dataclasses.replace(
        temporalio.converter.DataConverter.default,
        payload_codec=PayloadCodec(codec),
        failure_converter_class=temporalio.converter.DefaultFailureConverterWithEncodedAttributes,
    )
