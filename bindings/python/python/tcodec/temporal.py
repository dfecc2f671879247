"""tcodec for the Temporal Python SDK: a ``PayloadCodec`` and a ``DataConverter``."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import List, Sequence

import temporalio.converter
from temporalio.api.common.v1 import Payload

from tcodec._native import Codec


class PayloadCodec(temporalio.converter.PayloadCodec):
    """Seals every payload the SDK sends and opens what it receives, in Rust, a batch at a
    time, off the event loop (the GIL is released while the codec runs). A payload tcodec
    did not seal is refused unless the codec's decode policy allows it."""

    def __init__(self, codec: Codec) -> None:
        self.codec = codec

    async def encode(self, payloads: Sequence[Payload]) -> List[Payload]:
        return await self._run(self.codec.encode, payloads)

    async def decode(self, payloads: Sequence[Payload]) -> List[Payload]:
        return await self._run(self.codec.decode, payloads)

    @staticmethod
    async def _run(op, payloads: Sequence[Payload]) -> List[Payload]:
        if not payloads:
            return []
        serialized = [p.SerializeToString() for p in payloads]
        out = await asyncio.get_running_loop().run_in_executor(None, op, serialized)
        return [Payload.FromString(b) for b in out]


def data_converter(codec: Codec) -> temporalio.converter.DataConverter:
    """The SDK's default converter with tcodec as its payload codec and failure messages and
    stack traces moved into encoded (so sealed) attributes."""
    return dataclasses.replace(
        temporalio.converter.DataConverter.default,
        payload_codec=PayloadCodec(codec),
        failure_converter_class=temporalio.converter.DefaultFailureConverterWithEncodedAttributes,
    )
