from os import PathLike
from typing import List, Optional, Sequence, TypeVar, Union, overload

from temporalio.api.common.v1 import Payload

P = TypeVar("P", bound=Payload)

class CodecError(Exception):
    """A batch could not be encoded or decoded, or a keyring not opened. The message names
    the payload's index and the key id, never key material or payload contents."""

class Keyring:
    @staticmethod
    def open(
        path: Union[str, PathLike[str]],
        *,
        master_key_file: Optional[Union[str, PathLike[str]]] = None,
        kms_keys: Optional[Sequence[str]] = None,
        kms_endpoint: Optional[str] = None,
        kms_region: Optional[str] = None,
    ) -> Keyring: ...
    @staticmethod
    def from_env() -> Keyring: ...
    @property
    def name(self) -> str: ...
    @property
    def revision(self) -> int: ...
    @property
    def primary(self) -> Optional[str]: ...
    def reload(self) -> bool: ...

class Codec:
    def __init__(
        self, keyring: Keyring, *, decode_allow: str = "", compression: bool = True, threads: Optional[int] = None
    ) -> None: ...
    @staticmethod
    def from_env() -> Codec: ...
    @property
    def keyring(self) -> Keyring: ...
    # A batch of Payload messages comes back as messages, a batch of serialized payloads
    # (bytes) as bytes; either is serialized, sealed or opened, and parsed a step of about
    # 256 KiB at a time. try_*: None when a key needs unwrapping (a KMS call) or the batch
    # holds more than max_bytes serialized.
    @overload
    def encode(self, payloads: Sequence[P]) -> List[P]: ...
    @overload
    def encode(self, payloads: Sequence[bytes]) -> List[bytes]: ...
    @overload
    def decode(self, payloads: Sequence[P]) -> List[P]: ...
    @overload
    def decode(self, payloads: Sequence[bytes]) -> List[bytes]: ...
    @overload
    def try_encode(self, payloads: Sequence[P], max_bytes: Optional[int] = None) -> Optional[List[P]]: ...
    @overload
    def try_encode(self, payloads: Sequence[bytes], max_bytes: Optional[int] = None) -> Optional[List[bytes]]: ...
    @overload
    def try_decode(self, payloads: Sequence[P], max_bytes: Optional[int] = None) -> Optional[List[P]]: ...
    @overload
    def try_decode(self, payloads: Sequence[bytes], max_bytes: Optional[int] = None) -> Optional[List[bytes]]: ...
