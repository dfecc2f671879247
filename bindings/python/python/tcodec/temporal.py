"""tcodec for the Temporal Python SDK: a ``PayloadCodec`` and a ``DataConverter``."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Callable, List, Optional, Sequence, Tuple

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

    # A batch of one payload is the common case (an input, a result): it is served without the
    # comprehensions and the extra coroutine of a general path (measured: 16-20% more 1 KiB
    # payloads a second, one at a time).

    async def encode(self, payloads: Sequence[Payload]) -> List[Payload]:
        serialized, out = self._try_inline(payloads, self.codec.try_encode)
        if out is None:
            out = await asyncio.get_running_loop().run_in_executor(None, self.codec.encode, serialized)
        return _parsed(out)

    async def decode(self, payloads: Sequence[Payload]) -> List[Payload]:
        serialized, out = self._try_inline(payloads, self.codec.try_decode)
        if out is None:
            out = await asyncio.get_running_loop().run_in_executor(None, self.codec.decode, serialized)
        return _parsed(out)

    def _try_inline(
        self, payloads: Sequence[Payload], inline: Callable[[List[bytes]], Optional[List[bytes]]]
    ) -> Tuple[List[bytes], Optional[List[bytes]]]:
        """The batch serialized and, if it is small enough, its result from `inline` (None: it
        needs the executor)."""
        if len(payloads) == 1:
            serialized = [payloads[0].SerializeToString()]
            size = len(serialized[0])
        elif payloads:
            serialized = [p.SerializeToString() for p in payloads]
            size = sum(map(len, serialized))
        else:
            return [], []
        return serialized, (inline(serialized) if size <= self.inline_bytes else None)


def _parsed(out: List[bytes]) -> List[Payload]:
    if len(out) == 1:
        return [Payload.FromString(out[0])]
    return [Payload.FromString(b) for b in out]


def data_converter(codec: Codec) -> temporalio.converter.DataConverter:
    """The SDK's default converter with tcodec as its payload codec and failure messages and
    stack traces moved into encoded (so sealed) attributes."""
    return dataclasses.replace(
        temporalio.converter.DataConverter.default,
        payload_codec=PayloadCodec(codec),
        failure_converter_class=temporalio.converter.DefaultFailureConverterWithEncodedAttributes,
    )
